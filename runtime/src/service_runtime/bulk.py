"""Bulk writes as one statement over column arrays (`INSERT … SELECT FROM unnest(…)`).

SQLAlchemy compiles a multi-row `VALUES` anew for every row count, which costs more than the
database work on a hot path. A statement over arrays is compiled once and cached, and sends any
number of rows in one round trip.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, Row, Table, TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession


@cache
def _array_type(table: Table, column: str) -> str:
    """The column's own PostgreSQL type as an array, without its length or precision.

    Compiled from the column's type (not guessed from its class name), so every type is written
    exactly. The length and precision are left to the INSERT's assignment, as in a plain INSERT: an
    overlong text fails and a NUMERIC is rounded to its scale there, rather than being cut silently
    by an explicit cast to `VARCHAR(n)`.
    """
    column_type = table.c[column].type
    if isinstance(column_type, ARRAY):
        raise TypeError("array columns cannot be bulk-written through unnest; use a text encoding")
    compiled = str(column_type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    return re.sub(r"\(.*?\)", "", compiled).strip() + "[]"


#: Types whose values are bound as one separated text when they are all non-empty strings.
_TEXT_LIKE = ("VARCHAR[]", "TEXT[]", "JSON[]", "JSONB[]")
#: Values written through their text form (PostgreSQL parses `str(Decimal)`, ISO dates and times).
_PLAIN = (int, Decimal, dt.date, dt.datetime, uuid.UUID)


def _as_text(values: list[Any]) -> list[Any]:
    """Numbers, dates, times and ids in PostgreSQL's input syntax (None or anything else: as they are).

    A column with a NULL or a value of another type keeps its array.
    """
    if not values or type(values[0]) not in _PLAIN or any(v is None for v in values):
        return values
    first = values[0]
    if all(v is first for v in values):
        # One object for every row (a batch's timestamp, a run's invoice date): formatted once.
        return [str(first)] * len(values)
    return [str(v) for v in values]


#: Joins a text column's values into one parameter; split again by `string_to_array` in the
#: database. The unit separator is a control character no id, name or code of ours contains, and
#: `joined_text` checks that before it is used.
_SEPARATOR = "\x1f"


@cache
def _statement(
    table: Table,
    columns: tuple[str, ...],
    joined: frozenset[str],
    conflict: str,
    returning: str | None,
    returning_where: str | None,
) -> TextClause:
    target = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
    arrays = ", ".join(
        (
            f"string_to_array(CAST(:{c} AS text), E'\\x1f')"
            if _array_type(table, c) == "TEXT[]"
            else f"CAST(string_to_array(CAST(:{c} AS text), E'\\x1f') AS {_array_type(table, c)})"
        )
        if c in joined
        else f"CAST(:{c} AS {_array_type(table, c)})"
        for c in columns
    )
    names = ", ".join(f'"{c}"' for c in columns)
    # Identifiers and clauses come from our own table metadata and code, never from input; values are bound.
    sql = f"INSERT INTO {target} ({names}) SELECT * FROM unnest({arrays}) {conflict}"  # noqa: S608
    if returning:
        sql += f" RETURNING {returning}"
        if returning_where:
            # Only the rows the caller needs travel back (usually none).
            sql = f"WITH written AS ({sql}) SELECT * FROM written WHERE {returning_where}"  # noqa: S608
    return text(sql)


def joined_text(values: list[Any]) -> str | None:
    """The values as one separated string, when they are all non-empty text without the separator.

    Binding one string instead of a text array spares the driver a type check and an encoding per
    element, which is most of the client-side cost of a bulk write.
    """
    if not all(type(v) is str for v in values):
        return None
    joined = _SEPARATOR.join(values)
    if joined.count(_SEPARATOR) != len(values) - 1 or not all(values):
        return None
    return joined


async def insert_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: str = "ON CONFLICT DO NOTHING",
    returning: str | None = None,
    returning_where: str | None = None,
) -> list[Row[Any]]:
    """Insert `rows` (dicts with the same keys) in one statement; return the `returning` rows.

    Each column travels as one array parameter; a text or JSON column whose values are all
    non-empty strings, and a number, date, time or id column without NULLs, travels as one separated
    string instead (`joined_text`): the driver then encodes one value, not one per row, which is most
    of the client-side cost of a bulk write. JSON columns take JSON text (`jsonb`).
    `returning_where` filters the returned rows in the database (e.g. only updated ones).
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    params: dict[str, Any] = {}
    joined: set[str] = set()
    for c in columns:
        values = [r[c] for r in rows]
        text_value = joined_text(values if _array_type(table, c) in _TEXT_LIKE else _as_text(values))
        if text_value is None:
            params[c] = values
        else:
            params[c] = text_value
            joined.add(c)
    statement = _statement(table, columns, frozenset(joined), conflict, returning, returning_where)
    result = await session.execute(statement, params)
    return list(result.all()) if returning else []


def jsonb(value: Any) -> str:
    """JSON text for a JSON or JSONB column written through `insert_rows` (compact separators)."""
    return json.dumps(value, separators=(",", ":"))
