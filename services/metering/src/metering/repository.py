"""Metering persistence: bulk, conflict-aware writes, the monthly usage queries and the items behind
each figure (B-19). Every filter is built from the rules of `metering.domain` (voucher kinds, fee
channels, free roles), so what the unit tests check is what the SQL counts."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, or_, select, text, true, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from metering import tables as t
from metering.domain import FEE_CHANNELS, FREE_ROLES, VOUCHER_KINDS, Usage, month_end
from service_runtime.bulk import insert_rows

_VOUCHER_KIND_VALUES = sorted(k.value for k in VOUCHER_KINDS)
_FREE_ROLE_VALUES = sorted(r.value for r in FREE_ROLES)
_FEE_CHANNEL_VALUES = sorted(c.value for c in FEE_CHANNELS)


# Arrays instead of a tuple IN-list, so that the statement is compiled once whatever the count.
_VOUCHER_MONTHS = text(
    "SELECT v.environment_id, v.month FROM metering.vouchers AS v"
    " JOIN unnest(CAST(:envs AS text[]), CAST(:vouchers AS text[])) AS k(environment_id, voucher_id)"
    " USING (environment_id, voucher_id) WHERE v.month IS NOT NULL"
)


class SqlAlchemyUsageRepository:
    """Reads and writes metering's tables inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def upsert_voucher_creations(self, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
        """Record creations; the earliest creation of a voucher id wins, in any delivery order (B-08, B-09).

        Returns (environment, new month) of vouchers whose stored creation moved to an earlier one:
        the month it left may be closed and need an adjustment.
        """
        written = await insert_rows(
            self._s,
            t.vouchers,
            rows,
            conflict="ON CONFLICT (environment_id, voucher_id) DO UPDATE SET document_kind = EXCLUDED.document_kind,"
            " created_at = EXCLUDED.created_at, month = EXCLUDED.month"
            " WHERE vouchers.created_at IS NULL OR EXCLUDED.created_at < vouchers.created_at",
            # xmax is 0 for a fresh insert and set when ON CONFLICT updated an existing row.
            returning="environment_id, month, (xmax::text <> '0') AS moved",
            returning_where="moved",
        )
        return {(r.environment_id, r.month) for r in written}

    async def upsert_voucher_voids(self, rows: Sequence[dict[str, Any]]) -> None:
        """Record voids, also before the creation arrives; the earliest void wins (B-11)."""
        await insert_rows(
            self._s,
            t.vouchers,
            rows,
            conflict="ON CONFLICT (environment_id, voucher_id) DO UPDATE SET voided_at = EXCLUDED.voided_at,"
            " void_month = EXCLUDED.void_month"
            " WHERE vouchers.voided_at IS NULL OR EXCLUDED.voided_at < vouchers.voided_at",
        )

    async def insert_ignoring_duplicates(self, table_name: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        table = t.metadata.tables[f"{t.SCHEMA}.{table_name}"]
        if table is t.user_role_changes:  # an array column: the (rare) role changes go through executemany
            await self._s.execute(insert(table).on_conflict_do_nothing(), list(rows))
        else:
            await insert_rows(self._s, table, rows)

    async def upsert_hour_entries(self, rows: Sequence[dict[str, Any]]) -> None:
        """The newest recording of an hour entry wins."""
        columns = [c.name for c in t.hour_entries.c if c.name != "entry_id"]
        await insert_rows(
            self._s,
            t.hour_entries,
            rows,
            conflict="ON CONFLICT (entry_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
            + " WHERE EXCLUDED.recorded_at > hour_entries.recorded_at",
        )

    async def voucher_months(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Creation months of the given (environment, voucher) ids, for late-void adjustments."""
        keys = list(keys)
        if not keys:
            return set()
        rows = await self._s.execute(
            _VOUCHER_MONTHS, {"envs": [env for env, _ in keys], "vouchers": [v for _, v in keys]}
        )
        return {(r.environment_id, r.month) for r in rows}

    async def closed_months(self, months: Iterable[str]) -> set[str]:
        months = sorted(set(months))
        if not months:
            return set()
        rows = await self._s.execute(
            select(t.closed_months.c.month).where(t.closed_months.c.month.in_(months))
        )
        return set(rows.scalars())

    async def closed_months_since(self, month: str) -> list[str]:
        """Closed months from `month` on, oldest first."""
        c = t.closed_months.c
        return list(
            (await self._s.execute(select(c.month).where(c.month >= month).order_by(c.month))).scalars()
        )

    async def hour_entry_months(self, entry_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(environment, month) where the given hour entries stand now, before they are re-recorded."""
        ids = sorted(set(entry_ids))
        if not ids:
            return set()
        h = t.hour_entries.c
        rows = await self._s.execute(select(h.environment_id, h.month).where(h.entry_id.in_(ids)))
        return {(r.environment_id, r.month) for r in rows}

    async def is_closed(self, month: str) -> bool:
        return bool(await self.closed_months([month]))

    async def usage(self, month: str, environment_ids: Sequence[str] | None = None) -> dict[str, Usage]:
        """Usage of every environment with any usage in `month` (or of the given ones)."""
        start_month_end = month_end(month)

        def env_filter(col: ColumnElement[str]) -> ColumnElement[bool]:
            return col.in_(environment_ids) if environment_ids is not None else true()

        figures: dict[str, dict[str, Any]] = {}

        def put(env: str, key: str, value: Any) -> None:
            figures.setdefault(env, {})[key] = value

        v = t.vouchers.c
        rows = await self._s.execute(
            select(v.environment_id, func.count())
            .where(
                v.month == month,
                v.document_kind.in_(_VOUCHER_KIND_VALUES),
                or_(v.void_month.is_(None), v.void_month > v.month),
                env_filter(v.environment_id),
            )
            .group_by(v.environment_id)
        )
        for env, n in rows:
            put(env, "vouchers", n)

        p = t.payees.c
        rows = await self._s.execute(
            select(p.environment_id, func.count())
            .where(p.month == month, env_filter(p.environment_id))
            .group_by(p.environment_id)
        )
        for env, n in rows:
            put(env, "payees", n)

        m = t.einvoice_messages.c
        rows = await self._s.execute(
            select(m.environment_id, m.direction, func.count())
            .where(m.month == month, m.channel.in_(_FEE_CHANNEL_VALUES), env_filter(m.environment_id))
            .group_by(m.environment_id, m.direction)
        )
        for env, direction, n in rows:
            put(env, "einvoices_sent" if direction == "sent" else "einvoices_received", n)

        sg = t.signatures.c
        rows = await self._s.execute(
            select(sg.environment_id, func.sum(sg.signer_count))
            .where(sg.month == month, env_filter(sg.environment_id))
            .group_by(sg.environment_id)
        )
        for env, n in rows:
            put(env, "signatures", int(n))

        u = t.user_role_changes.c
        latest = (
            select(u.environment_id, u.user_id, u.roles)
            .distinct(u.environment_id, u.user_id)
            .where(u.changed_at < start_month_end, env_filter(u.environment_id))
            .order_by(u.environment_id, u.user_id, u.changed_at.desc())
            .subquery()
        )
        paid = and_(
            func.cardinality(latest.c.roles) > 0,
            ~latest.c.roles.contained_by(literal_column(f"ARRAY{_FREE_ROLE_VALUES!r}::varchar[]")),
        )
        rows = await self._s.execute(
            select(latest.c.environment_id, func.count()).where(paid).group_by(latest.c.environment_id)
        )
        for env, n in rows:
            put(env, "billable_users", n)

        h = t.hour_entries.c
        rows = await self._s.execute(
            select(h.environment_id, h.service_product_code, func.sum(h.hours))
            .where(h.month == month, h.billable.is_(True), env_filter(h.environment_id))
            .group_by(h.environment_id, h.service_product_code)
        )
        for env, product, hours in rows:
            figures.setdefault(env, {}).setdefault("billable_hours", {})[product] = Decimal(hours).normalize()

        if environment_ids is not None:
            for env in environment_ids:
                figures.setdefault(env, {})
        return {env: Usage(**values) for env, values in sorted(figures.items())}

    async def finalized(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[dict[str, Any], int]]:
        keys = list(keys)
        if not keys:
            return {}
        f = t.finalized_usage.c
        rows = await self._s.execute(
            select(f.environment_id, f.month, f.usage, f.adjustments).where(
                tuple_(f.environment_id, f.month).in_(keys)
            )
        )
        return {(r.environment_id, r.month): (r.usage, r.adjustments) for r in rows}

    async def save_finalized(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store published figures (`usage` as JSON text), any number of environments in one statement."""
        await insert_rows(
            self._s,
            t.finalized_usage,
            rows,
            conflict="ON CONFLICT (environment_id, month) DO UPDATE SET usage = EXCLUDED.usage,"
            " adjustments = EXCLUDED.adjustments, updated_at = EXCLUDED.updated_at",
        )

    async def mark_closed(self, month: str, closed_at: datetime, environment_count: int) -> bool:
        """Claim the close of a month; False if it was closed already (closing is idempotent)."""
        result = await self._s.execute(
            insert(t.closed_months)
            .values(month=month, closed_at=closed_at, environment_count=environment_count)
            .on_conflict_do_nothing()
            .returning(t.closed_months.c.month)
        )
        return result.scalar_one_or_none() is not None

    async def summarize_month_indexes(self) -> None:
        """Let the month BRIN indexes cover the newest pages, so that a close skips other months."""
        for index in t.MONTH_INDEXES:
            await self._s.execute(
                text("SELECT brin_summarize_new_values(CAST(:index AS regclass))"),
                {"index": f"{t.SCHEMA}.{index.name}"},
            )

    async def lock_month(self, month: str) -> None:
        """Serialise closes of the same month across replicas."""
        await self._s.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"metering-close-{month}"}
        )

    async def close_info(self, month: str) -> tuple[datetime, int] | None:
        row = (
            await self._s.execute(
                select(t.closed_months.c.closed_at, t.closed_months.c.environment_count).where(
                    t.closed_months.c.month == month
                )
            )
        ).first()
        return (row.closed_at, row.environment_count) if row else None

    async def adjustments_of(self, environment_id: str, month: str) -> int:
        f = t.finalized_usage.c
        value = await self._s.scalar(
            select(f.adjustments).where(f.environment_id == environment_id, f.month == month)
        )
        return int(value or 0)


# --- the items behind each figure (B-19) ---

_FREE_ROLE_SET = set(_FREE_ROLE_VALUES)


class ItemKind(StrEnum):
    """Which figure's items to list."""

    VOUCHERS = "vouchers"
    PAYEES = "payees"
    MESSAGES = "messages"
    USERS = "users"
    SIGNATURES = "signatures"
    HOURS = "hours"


@dataclass(frozen=True)
class ItemPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), default=str).encode()).decode()


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(key, list):
        raise ValueError("invalid cursor")
    return key


class ItemRepository:
    """The items behind each monthly figure (B-19), read in keyset pages in the caller's session."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def page(
        self, kind: ItemKind, environment_id: str, month: str, *, limit: int, cursor: str | None
    ) -> ItemPage:
        """One page of the items behind a figure, ordered by their natural key."""
        return await _page(self._s, kind, environment_id, month, limit=limit, cursor=cursor)


async def list_items(
    session: AsyncSession, kind: ItemKind, environment_id: str, month: str, *, limit: int, cursor: str | None
) -> ItemPage:
    """One page of the items behind a figure (`ItemRepository(session).page`)."""
    return await ItemRepository(session).page(kind, environment_id, month, limit=limit, cursor=cursor)


async def _page(
    session: AsyncSession, kind: ItemKind, environment_id: str, month: str, *, limit: int, cursor: str | None
) -> ItemPage:
    after = decode_cursor(cursor)
    query, key_columns, render = _QUERIES[kind](environment_id, month)
    if after is not None:
        query = query.where(tuple_(*key_columns) > tuple_(*after))
    rows = (await session.execute(query.order_by(*key_columns).limit(limit + 1))).mappings().all()
    page = [render(r) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor([rows[limit - 1][c.name] for c in key_columns]) if more else None
    return ItemPage(items=page, next_cursor=next_cursor)


Query = tuple[Select[Any], list[ColumnElement[Any]], Any]


def _vouchers(env: str, month: str) -> Query:
    v = t.vouchers.c
    query = select(v.voucher_id, v.document_kind, v.created_at, v.voided_at, v.void_month, v.month).where(
        v.environment_id == env, v.month == month
    )

    def render(r: Any) -> dict[str, Any]:
        voided_same_month = r["void_month"] is not None and r["void_month"] <= r["month"]
        return {
            "voucher_id": r["voucher_id"],
            "document_kind": r["document_kind"],
            "created_at": r["created_at"],
            "voided_at": r["voided_at"],
            "counted": r["document_kind"] in _VOUCHER_KIND_VALUES and not voided_same_month,  # B-10, B-11
        }

    return query, [v.voucher_id], render


def _payees(env: str, month: str) -> Query:
    p = t.payees.c
    query = select(p.person_id, p.first_payslip_id, p.first_calculated_at).where(
        p.environment_id == env, p.month == month
    )
    return query, [p.person_id], dict


def _messages(env: str, month: str) -> Query:
    m = t.einvoice_messages.c
    query = select(m.voucher_id, m.direction, m.channel, m.at).where(
        m.environment_id == env, m.month == month
    )

    def render(r: Any) -> dict[str, Any]:
        return dict(r) | {"charged": r["channel"] in _FEE_CHANNEL_VALUES}  # B-13

    return query, [m.voucher_id, m.direction], render


def _users(env: str, month: str) -> Query:
    u = t.user_role_changes.c
    latest = (
        select(u.user_id, u.roles, u.changed_at)
        .distinct(u.user_id)
        .where(u.environment_id == env, u.changed_at < month_end(month))
        .order_by(u.user_id, u.changed_at.desc())
        .subquery()
    )
    # A user whose last change removed every role is not there at month end.
    query = select(latest.c.user_id, latest.c.roles, latest.c.changed_at).where(
        func.cardinality(latest.c.roles) > 0
    )

    def render(r: Any) -> dict[str, Any]:
        roles = list(r["roles"])
        return {
            "user_id": r["user_id"],
            "roles_at_month_end": roles,
            "since": r["changed_at"],
            "billable": bool(set(roles) - _FREE_ROLE_SET),  # B-16
        }

    return query, [latest.c.user_id], render


def _signatures(env: str, month: str) -> Query:
    s = t.signatures.c
    query = select(s.signature_id, s.signer_count, s.completed_at).where(
        s.environment_id == env, s.month == month
    )
    return query, [s.signature_id], dict


def _hours(env: str, month: str) -> Query:
    h = t.hour_entries.c
    query = select(
        h.entry_id, h.employee_id, h.service_product_code, h.work_date, h.hours, h.billable, h.recorded_at
    ).where(h.environment_id == env, h.month == month)

    def render(r: Any) -> dict[str, Any]:
        return dict(r) | {"hours": format(r["hours"].normalize(), "f")}

    return query, [h.entry_id], render


_QUERIES = {
    ItemKind.VOUCHERS: _vouchers,
    ItemKind.PAYEES: _payees,
    ItemKind.MESSAGES: _messages,
    ItemKind.USERS: _users,
    ItemKind.SIGNATURES: _signatures,
    ItemKind.HOURS: _hours,
}
