"""Bulk writes as one statement over column arrays (`INSERT … SELECT FROM unnest(…)`).

SQLAlchemy compiles a multi-row `VALUES` anew for every row count, which costs more than the
database work on a hot path. A statement over arrays is compiled once and cached, and sends any
number of rows in one round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Row, Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

_PG_TYPES = {
    "VARCHAR": "text",
    "TEXT": "text",
    "UUID": "uuid",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "NUMERIC": "numeric",
    "DATETIME": "timestamptz",
    "TIMESTAMP": "timestamptz",
    "LARGEBINARY": "bytea",
    "BYTEA": "bytea",
    "JSONB": "jsonb",  # pass JSON text: json.dumps(value)
    "JSON": "json",
}


def _array_type(table: Table, column: str) -> str:
    type_name = type(table.c[column].type).__name__.upper()
    if type_name in ("ARRAY",):
        raise TypeError("array columns cannot be bulk-written through unnest; use a text encoding")
    return _PG_TYPES.get(type_name, "text") + "[]"


@cache
def _statement(
    table: Table, columns: tuple[str, ...], conflict: str, returning: str | None, returning_where: str | None
) -> TextClause:
    target = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
    arrays = ", ".join(f"CAST(:{c} AS {_array_type(table, c)})" for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    # Identifiers and clauses come from our own table metadata and code, never from input; values are bound.
    sql = f"INSERT INTO {target} ({names}) SELECT * FROM unnest({arrays}) {conflict}"  # noqa: S608
    if returning:
        sql += f" RETURNING {returning}"
        if returning_where:
            # Only the rows the caller needs travel back (usually none).
            sql = f"WITH written AS ({sql}) SELECT * FROM written WHERE {returning_where}"  # noqa: S608
    return text(sql)


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

    `returning_where` filters the returned rows in the database (e.g. only updated ones).
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    params = {c: [r[c] for r in rows] for c in columns}
    result = await session.execute(_statement(table, columns, conflict, returning, returning_where), params)
    return list(result.all()) if returning else []
