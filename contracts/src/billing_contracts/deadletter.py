"""The dead letter: a message a consumer could not process, with the reason."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from billing_contracts.base import Message


class FailureKind(StrEnum):
    """Why a message was dead-lettered."""

    MALFORMED = "malformed"
    SCHEMA_VIOLATION = "schema_violation"
    REJECTED = "rejected"


class DeadLetterV1(Message):
    """A message that could not be processed; the partition went on without it."""

    message_type: ClassVar[str] = "dead-letter"

    consumer_group: str = Field(description="Consumer group that gave up on the message.")
    original_topic: str = Field(description="Topic the message was read from.")
    original_partition: int = Field(ge=0, description="Partition it was read from.")
    original_offset: int = Field(ge=0, description="Its offset there.")
    original_key_b64: str | None = Field(default=None, description="The original key, base64.")
    original_value_b64: str = Field(description="The original value bytes, base64, exactly as received.")
    original_event_id: str | None = Field(default=None, description="Its `event_id`, if one could be read.")
    failure: FailureKind = Field(description="Kind of failure.")
    reason: str = Field(max_length=4000, description="Human-readable reason, e.g. the validation errors.")

    def kafka_key(self) -> bytes:
        return f"{self.original_topic}:{self.original_partition}".encode()

    def original_value(self) -> bytes:
        """The original message bytes."""
        return base64.b64decode(self.original_value_b64)
