"""The items behind each monthly figure (B-19 specification), read in keyset pages."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from metering import tables as t
from metering.domain import FEE_CHANNELS, FREE_ROLES, VOUCHER_KINDS, month_end

_VOUCHER_KINDS = sorted(k.value for k in VOUCHER_KINDS)
_FEE_CHANNELS = sorted(c.value for c in FEE_CHANNELS)
_FREE_ROLES = {r.value for r in FREE_ROLES}


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


async def list_items(
    session: AsyncSession, kind: ItemKind, environment_id: str, month: str, *, limit: int, cursor: str | None
) -> ItemPage:
    """One page of the items behind a figure, ordered by their natural key."""
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
            "counted": r["document_kind"] in _VOUCHER_KINDS and not voided_same_month,  # B-10, B-11
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
        return dict(r) | {"charged": r["channel"] in _FEE_CHANNELS}  # B-13

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
            "billable": bool(set(roles) - _FREE_ROLES),  # B-16
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

__all__ = ["ItemKind", "ItemPage", "list_items"]
