"""Contracts in PostgreSQL: current state, effective-dated terms (B-26) and the audit of every change."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.contracts import PayerKind
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contract_rules import ContractStatus, ContractTerms, TermChange, terms_in_effect
from invoicing.pricing import PackageCode

_C = t.contracts.c
_T = t.contract_terms.c


def term_change_from_row(row: RowMapping) -> TermChange:
    effective = row["effective_from"]
    return TermChange(
        effective_from=None if effective is None else YearMonth.of(effective),
        requested_at=row["requested_at"],
        seq=row["id"],
        package=None if row["package"] is None else PackageCode(row["package"]),
        sets_accounting_firm=row["sets_accounting_firm"],
        accounting_firm_id=row["accounting_firm_id"],
        accounting_firm_business_id=row["accounting_firm_business_id"],
        payer_kind=None if row["payer_kind"] is None else PayerKind(row["payer_kind"]),
        payer_id=row["payer_id"],
    )


def _terms(contract: RowMapping, changes: Sequence[TermChange], month: YearMonth) -> ContractTerms:
    effective = terms_in_effect(changes, month)
    return ContractTerms(
        contract_id=contract["contract_id"],
        environment_id=contract["environment_id"],
        business_id=contract["business_id"],
        invoice_name=contract["company_name"],
        package=effective.package,
        production_date=contract["production_date"],
        end_date=contract["end_date"],
        payer_kind=effective.payer_kind,
        payer_id=effective.payer_id,
        accounting_firm_id=effective.accounting_firm_id,
        accounting_firm_business_id=effective.accounting_firm_business_id,
        reseller_partner_id=contract["reseller_partner_id"],
        own_use=contract["own_use"],
        billing_address=contract["billing_address"],
        billing_channel=contract["billing_channel"],
        einvoice_address=contract["einvoice_address"],
        billing_email=contract["billing_email"],
        billing_contact=contract["billing_contact"],
        status=ContractStatus(contract["status"]),
    )


def _billable_in(month: YearMonth) -> Any:
    # B-01: from the production date; B-27: up to the end date. A notice given before the
    # production date can end a contract that never starts; it is never billable.
    return and_(
        _C.production_date <= month.last_day,
        or_(_C.end_date.is_(None), and_(_C.end_date >= month.first_day, _C.end_date >= _C.production_date)),
    )


async def contract_terms_for_month(session: AsyncSession, month: YearMonth) -> list[ContractTerms]:
    """Every contract billable in `month` with the package, firm and payer in effect for it (B-26).

    Ordered by contract id. Two reads: the billable contracts, then their term changes up to the
    month; the fold is the pure `terms_in_effect`.
    """
    contracts = (
        (await session.execute(select(t.contracts).where(_billable_in(month)).order_by(_C.contract_id)))
        .mappings()
        .all()
    )
    if not contracts:
        return []
    billable = select(_C.contract_id).where(_billable_in(month)).scalar_subquery()
    rows = (
        await session.execute(
            select(t.contract_terms).where(
                _T.contract_id.in_(billable),
                or_(_T.effective_from.is_(None), _T.effective_from <= month.first_day),
            )
        )
    ).mappings()
    changes: dict[str, list[TermChange]] = defaultdict(list)
    for row in rows:
        changes[row["contract_id"]].append(term_change_from_row(row))
    return [_terms(c, changes[c["contract_id"]], month) for c in contracts]


async def contract_terms_of(
    session: AsyncSession, contract_id: str, month: YearMonth
) -> ContractTerms | None:
    """One contract's terms for `month`, billable or not (for the API and the use cases)."""
    contract = await contract_row(session, contract_id)
    if contract is None:
        return None
    return _terms(contract, await term_changes(session, contract_id), month)


async def contract_row(
    session: AsyncSession, contract_id: str, *, for_update: bool = False
) -> RowMapping | None:
    query = select(t.contracts).where(_C.contract_id == contract_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def contract_row_of_environment(
    session: AsyncSession, environment_id: str, *, for_update: bool = False
) -> RowMapping | None:
    query = select(t.contracts).where(_C.environment_id == environment_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def term_changes(session: AsyncSession, contract_id: str) -> list[TermChange]:
    rows = (await session.execute(select(t.contract_terms).where(_T.contract_id == contract_id))).mappings()
    return [term_change_from_row(r) for r in rows]


async def add_term_change(
    session: AsyncSession, contract_id: str, change: TermChange, *, change_id: int | None, applied: bool
) -> None:
    await session.execute(
        t.contract_terms.insert().values(
            contract_id=contract_id,
            effective_from=None if change.effective_from is None else change.effective_from.first_day,
            requested_at=change.requested_at,
            change_id=change_id,
            package=None if change.package is None else change.package.value,
            sets_accounting_firm=change.sets_accounting_firm,
            accounting_firm_id=change.accounting_firm_id,
            accounting_firm_business_id=change.accounting_firm_business_id,
            payer_kind=None if change.payer_kind is None else change.payer_kind.value,
            payer_id=change.payer_id,
            applied=applied,
        )
    )


async def mark_terms_applied(session: AsyncSession, contract_id: str, month: YearMonth) -> None:
    await session.execute(
        update(t.contract_terms)
        .where(
            _T.contract_id == contract_id,
            _T.applied.is_(False),
            _T.effective_from <= month.first_day,
        )
        .values(applied=True)
    )


async def last_billed_month(session: AsyncSession, environment_id: str) -> YearMonth | None:
    """The latest month billed for the environment (invoiced or held), if any."""
    b = t.billed_environment_months.c
    month = await session.scalar(select(func.max(b.month)).where(b.environment_id == environment_id))
    return None if month is None else YearMonth.parse(str(month))


async def contracts_due_for_refresh(session: AsyncSession, today: dt.date) -> list[str]:
    """Contracts whose current state lags `today`: production reached, ended, or terms now in effect."""
    month = YearMonth.of(today)
    lagging_status = select(_C.contract_id).where(
        or_(
            and_(_C.status == ContractStatus.SIGNED.value, _C.production_date <= today),
            and_(_C.status != ContractStatus.TERMINATED.value, _C.end_date < today),
        )
    )
    pending_terms = select(_T.contract_id).where(_T.applied.is_(False), _T.effective_from <= month.first_day)
    ids = (await session.execute(lagging_status.union(pending_terms))).scalars().all()
    return sorted(ids)


async def record_change(
    session: AsyncSession,
    *,
    contract_id: str,
    at: dt.datetime,
    change: str,
    details: Mapping[str, Any],
    requested_by: Mapping[str, Any] | None = None,
    outcome: str = "accepted",
    rule: str | None = None,
    reason: str | None = None,
    effective_from: dt.date | None = None,
    source: str | None = None,
    event_id: uuid.UUID | None = None,
) -> int:
    """Audit one change or refusal: who, when, what, why (B-25 refusals are logged too)."""
    change_id = await session.scalar(
        t.contract_changes.insert()
        .values(
            contract_id=contract_id,
            at=at,
            change=change,
            requested_by=requested_by,
            details=dict(details),
            outcome=outcome,
            rule=rule,
            reason=reason,
            effective_from=effective_from,
            source=source,
            event_id=event_id,
        )
        .returning(t.contract_changes.c.id)
    )
    return int(change_id or 0)


async def contract_history(session: AsyncSession, contract_id: str) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(t.contract_changes)
            .where(t.contract_changes.c.contract_id == contract_id)
            .order_by(t.contract_changes.c.id)
        )
    ).mappings()
    return [dict(r) for r in rows]
