"""The envelope every message carries, and the shared field types."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from billing_contracts.references import reference_check_digit


def _business_id_check_digit(value: str) -> str:
    # Weights of the Finnish business ID checksum (Y-tunnuksen tarkistusmerkki).
    remainder = sum(int(d) * w for d, w in zip(value[:7], (7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    if remainder == 1 or int(value[8]) != (0 if remainder == 0 else 11 - remainder):
        raise ValueError(f"{value} has an invalid check digit")
    return value


def _reference_number_check_digit(value: str) -> str:
    # Finnish reference number (viitenumero): the 7-3-1 check digit last.
    if reference_check_digit(value[:-1]) != int(value[-1]):
        raise ValueError(f"{value} has an invalid check digit")
    return value


def _decimal_string(value: Decimal) -> str:
    return format(value, "f")


_CENT = Decimal("0.01")


def _cents_string(value: Decimal) -> str:
    # Always two decimals on the wire ("19.90", never "19.9"); validation guarantees it is exact.
    return format(value.quantize(_CENT), "f")


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
    AfterValidator(_business_id_check_digit),
    Field(
        description="Finnish business ID (Y-tunnus), NNNNNNN-C with a valid check digit.",
        examples=["2077474-0"],
    ),
]

ReferenceNumber = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4,20}$"),
    AfterValidator(_reference_number_check_digit),
    Field(
        description="Finnish reference number (viitenumero), 4–20 digits, the last a valid check digit.",
        examples=["10003"],
    ),
]

# The JSON Schema of the Decimal types says "string" only: that is what producers must send.
# Consumers are more lenient and also accept a JSON number when it is exact within the type's
# decimals (19.9 is accepted, 19.999 and 0.30000000000000004 are rejected), see docs.
Money = Annotated[
    Decimal,
    Field(
        max_digits=14,
        decimal_places=2,
        description="An amount in euros, at most two decimals, sent as a JSON string (never a float).",
        examples=["19.90"],
    ),
    PlainSerializer(_cents_string, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d{1,12}(\.\d{1,2})?$"}, mode="validation"),
]

UnitPrice = Annotated[
    Decimal,
    Field(
        max_digits=16,
        decimal_places=5,
        description="A unit price in euros, at most five decimals, sent as a JSON string.",
        examples=["1.79"],
    ),
    PlainSerializer(_decimal_string, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d{1,11}(\.\d{1,5})?$"}, mode="validation"),
]

Quantity = Annotated[
    Decimal,
    Field(
        max_digits=14,
        decimal_places=4,
        description=("A quantity (pieces, persons, hours), at most four decimals, sent as a JSON string."),
        examples=["3"],
    ),
    PlainSerializer(_decimal_string, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d{1,10}(\.\d{1,4})?$"}, mode="validation"),
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
    #: Name of the field whose value is the Kafka key (the aggregate id), for the default
    #: `kafka_key()` and for the AsyncAPI key binding; `None` when a subclass builds its own key.
    key_field: ClassVar[str | None] = None

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
        if self.key_field is not None:
            return str(getattr(self, self.key_field)).encode()
        raise NotImplementedError(f"{type(self).__name__} must define its Kafka key")


def wire_json(message: BaseModel) -> bytes:
    """Serialise a contract as UTF-8 JSON bytes, the one wire format of every topic."""
    return message.model_dump_json().encode()
