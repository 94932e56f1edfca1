"""The envelope every message carries, and the shared field types."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

EnvironmentId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
    Field(
        description=(
            "Id of one customer environment (one Procountor instance, one per business ID). "
            "It is the Kafka key of every usage message."
        ),
        examples=["env-1001"],
    ),
]

BusinessId = Annotated[
    str,
    StringConstraints(pattern=r"^\d{7}-\d$"),
    Field(description="Finnish business ID (Y-tunnus), NNNNNNN-C with a valid check digit.", examples=["2077474-0"]),
]

Money = Annotated[
    Decimal,
    Field(
        max_digits=14,
        decimal_places=2,
        description="An amount in euros with exactly two decimals, sent as a JSON string (never a float).",
        examples=["19.90"],
    ),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]

UnitPrice = Annotated[
    Decimal,
    Field(
        max_digits=16,
        decimal_places=5,
        description="A unit price in euros, at most five decimals, sent as a JSON string.",
        examples=["1.79"],
    ),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]

Quantity = Annotated[
    Decimal,
    Field(
        max_digits=14,
        decimal_places=4,
        description="A quantity (pieces, persons, hours), at most four decimals, sent as a JSON string.",
        examples=["3"],
    ),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]

YearMonth = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    Field(description="A calendar month in Europe/Helsinki, YYYY-MM.", examples=["2026-10"]),
]

_VERSION_SUFFIX = re.compile(r"V(\d+)$")


class Message(BaseModel):
    """Envelope of every event and command.

    `event_id` is the idempotency key: a consumer applies one event id at most once, forever.
    Unknown fields are ignored on input, so that a producer may add optional fields without
    breaking consumers (an additive optional field keeps the version; anything else is a new
    class `…V<N+1>` on a new topic).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)

    #: Message type name on the wire, e.g. ``usage.voucher-created``; set by each subclass.
    message_type: ClassVar[str]

    event_id: UUID = Field(
        description="Unique id of this message, chosen by the producer; the idempotency key.",
        examples=["0b9a7d5e-7f4b-4a4e-9f43-5c3f0d5f2a10"],
    )
    occurred_at: AwareDatetime = Field(
        description="When the fact happened at the producer, with a time-zone offset.",
        examples=["2026-10-05T09:30:00+03:00"],
    )
    producer: str = Field(
        min_length=1,
        max_length=100,
        description="Name of the system or service that produced the message.",
        examples=["procountor-env-events"],
    )

    @classmethod
    def version(cls) -> int:
        """Contract version, read from the class name suffix (`…V1` is version 1)."""
        match = _VERSION_SUFFIX.search(cls.__name__)
        if match is None:
            raise TypeError(f"{cls.__name__} has no version suffix")
        return int(match.group(1))

    def kafka_key(self) -> bytes:
        """Kafka key: the id of the aggregate the message is about (ordering unit)."""
        raise NotImplementedError(f"{type(self).__name__} must define its Kafka key")


def wire_json(message: BaseModel) -> bytes:
    """Serialise a contract as UTF-8 JSON bytes, the one wire format of every topic."""
    return message.model_dump_json().encode()
