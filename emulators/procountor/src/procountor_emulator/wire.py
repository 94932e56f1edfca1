"""The Procountor wire format: JSON whose numbers are exact decimals, and the error body."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.responses import Response

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One entry of the `errors` list; `field` is a dotted path such as `paymentInfo.dueDate`."""

    field: str | None
    message: str


class ApiError(Exception):
    """Answered as `{"errors": [{"status", "field", "message"}, …]}` with HTTP status `status`."""

    def __init__(
        self,
        status: int,
        errors: Sequence[FieldError],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, [e.message for e in errors])
        self.status = status
        self.errors = tuple(errors)
        self.headers = dict(headers or {})

    @classmethod
    def single(
        cls,
        status: int,
        message: str,
        field: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> ApiError:
        return cls(status, [FieldError(field, message)], headers=headers)

    def body(self) -> JsonObject:
        return {
            "errors": [{"status": self.status, "field": e.field, "message": e.message} for e in self.errors]
        }


def loads(data: bytes) -> Any:
    """Parse JSON with every non-integer number as a Decimal, never a float."""
    return json.loads(data, parse_float=Decimal)


def dumps(value: Any) -> str:
    """Serialise JSON, writing Decimals as plain JSON numbers with their exact digits."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("JSON has no representation for a non-finite number")
        out.append(format(value, "f"))
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


class ProcountorJSONResponse(Response):
    """A JSON response that keeps Decimal amounts exact on the wire."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
