"""The envelope every message carries, and the shared field types."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from billing_contracts.references import is_valid_business_id_check_digit, reference_check_digit


def _business_id_check_digit(value: str) -> str:
    # The Finnish business ID checksum (Y-tunnuksen tarkistusmerkki).
    if not is_valid_business_id_check_digit(value):
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

#: The accepted range of every date and timestamp on our topics and HTTP APIs (docs/publishing-events.md).
#: Far enough from both ends of the calendar that no date arithmetic of ours (a month on, a day
#: back, a time zone) can overflow, and wide enough for any date this product bills or records.
EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2099, 12, 31)
EARLIEST_TIMESTAMP = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST_TIMESTAMP = dt.datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
#: Integers: 64-bit signed, what PostgreSQL's bigint and every other system of ours can hold.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Counts and positions: what a PostgreSQL integer column holds.
INT32_MAX = 2**31 - 1

_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date_text(value: Any) -> Any:
    """A `YYYY-MM-DD` string (or a date) as a date; anything else refused.

    pydantic alone would read 0 as 1970-01-01 and "2026-01-01T00:00:00" as a date: a number or a
    timestamp is not a date, it is a mistake that must not move anyone's invoice. One call that
    also parses (the C parser), because this runs for every dated message on the hot path.
    """
    if type(value) is str:
        if len(value) == 10 and value[4] == "-" and value[7] == "-":
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError("expected a date as YYYY-MM-DD")
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    kind = "a number" if isinstance(value, int | float | Decimal) else f"a {type(value).__name__}"
    raise ValueError(f"expected a date as a YYYY-MM-DD string, not {kind}")


Date = Annotated[
    dt.date,
    BeforeValidator(_date_text),
    Field(ge=EARLIEST_DATE, le=LATEST_DATE),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "formatMinimum": EARLIEST_DATE.isoformat(),
            "formatMaximum": LATEST_DATE.isoformat(),
        },
        mode="validation",
    ),
]
"""A calendar date `YYYY-MM-DD` between 2000-01-01 and 2099-12-31; never a number."""

#: A timestamp's bounds are checked by pydantic itself (no Python call per field: usage events
#: carry two on the hot path). A JSON number is read as seconds since 1970 (UTC) by pydantic; the
#: bounds refuse 0 and every other number before 2000, and the schema asks for strings.

Timestamp = Annotated[
    AwareDatetime,
    Field(ge=EARLIEST_TIMESTAMP, le=LATEST_TIMESTAMP),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "formatMinimum": EARLIEST_TIMESTAMP.isoformat(),
            "formatMaximum": LATEST_TIMESTAMP.isoformat(),
        },
        mode="validation",
    ),
]
"""An RFC 3339 timestamp with an offset, from 2000-01-01 to 2099-12-31 (UTC)."""


def bound_message(error_type: str, message: str) -> str:
    """pydantic's message for a date or timestamp bound, said in dates (its own shows a repr)."""
    if error_type in ("greater_than_equal", "less_than_equal") and "datetime.datetime(" in message:
        return "Input should be a time from 2000-01-01T00:00:00Z to 2099-12-31T23:59:59Z"
    if error_type in ("greater_than_equal", "less_than_equal") and "datetime.date(" in message:
        return "Input should be a date from 2000-01-01 to 2099-12-31"
    return message


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An integer a 64-bit signed column holds."""

YearMonth = Annotated[
    str,
    StringConstraints(pattern=r"^20\d{2}-(0[1-9]|1[0-2])$"),
    Field(
        description="A calendar month in Europe/Helsinki, YYYY-MM (2000-01 to 2099-12).", examples=["2026-10"]
    ),
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
    occurred_at: Timestamp = Field(
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
