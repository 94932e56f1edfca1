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
    original_key_b64: str | None = Field(
        default=None,
        description="The original key, base64; its first 1,024 bytes when `original_key_truncated`.",
    )
    original_value_b64: str = Field(
        description="The original value bytes, base64, exactly as received; only their beginning when "
        "`original_truncated` (then `original_size` and `original_sha256` identify the whole)."
    )
    original_event_id: str | None = Field(
        default=None,
        max_length=100,
        description="Its `event_id`, if one could be read (control characters removed).",
    )
    failure: FailureKind = Field(description="Kind of failure.")
    reason: str = Field(
        max_length=4000,
        description="What is wrong, for people: the rule or the validation path and the problem. Never SQL, "
        "parameters or stack traces (the consumer's log has those, under the event id).",
    )
    original_size: int | None = Field(
        default=None, ge=0, description="Size of the original value in bytes (absent in older dead letters)."
    )
    original_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the whole original value, hex (absent in older dead letters).",
    )
    original_truncated: bool = Field(
        default=False,
        description="True when `original_value_b64` holds only the beginning of a value too large to carry.",
    )
    original_key_truncated: bool = Field(
        default=False, description="True when `original_key_b64` holds only the beginning of the key."
    )

    def kafka_key(self) -> bytes:
        return f"{self.original_topic}:{self.original_partition}".encode()

    def original_value(self) -> bytes:
        """The original message bytes (their beginning when `original_truncated`)."""
        return base64.b64decode(self.original_value_b64)
