"""A contract's effective-dated terms in PostgreSQL (B-26): the changes, and the terms of a month as
billing reads them (every billable contract of a month at once, the hot path of a billing run)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, Text, and_, cast, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.contracts import PayerKind
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contracts.domain import (
    ContractStatus,
    ContractTerms,
    EffectiveTerms,
    TermChange,
    initial_change,
    terms_in_effect,
)
from invoicing.prices.domain import PackageCode

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


_JSON_COLUMNS = ("billing_address", "einvoice_address", "billing_contact")


def _terms_query(month: YearMonth) -> Any:
    """The billable contracts of `month` with the terms they were signed with (one row each)."""
    signed = t.contract_terms.alias("signed")
    return (
        select(
            _C.contract_id,
            _C.environment_id,
            _C.business_id,
            _C.company_name,
            _C.production_date,
            _C.end_date,
            _C.reseller_partner_id,
            _C.own_use,
            _C.billing_channel,
            _C.billing_email,
            _C.status,
            # As text, decoded below: cheaper than the driver's per-value JSON codec at 100,000 rows.
            *(cast(_C[name], Text).label(name) for name in _JSON_COLUMNS),
            signed.c.package,
            signed.c.accounting_firm_id,
            signed.c.accounting_firm_business_id,
            signed.c.payer_kind,
            signed.c.payer_id,
        )
        .join(signed, and_(signed.c.contract_id == _C.contract_id, signed.c.effective_from.is_(None)))
        .where(_billable_in(month))
        .order_by(_C.contract_id)
    )


def _later_changes_query(month: YearMonth) -> Any:
    """The changes up to `month` of the billable contracts, beyond the terms signed with."""
    return (
        select(t.contract_terms)
        .join(t.contracts, _C.contract_id == _T.contract_id)
        .where(_T.effective_from.is_not(None), _T.effective_from <= month.first_day, _billable_in(month))
    )


class JsonObject(Mapping[str, Any]):
    """A JSON object read as text and decoded on first use.

    A billing run reads every contract but prints the address of one contract per payer; decoding
    100,000 addresses it never looks at would cost seconds.
    """

    __slots__ = ("_text", "_value")

    def __init__(self, text: str) -> None:
        self._text = text
        self._value: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._value is None:
            self._value = json.loads(self._text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"JsonObject({self._text})"


def _loads(text: str | None) -> JsonObject | None:
    # JSONB `null` (what a None became) and SQL NULL both mean "none".
    return None if text is None or text == "null" else JsonObject(text)


async def contract_terms_for_month(session: AsyncSession, month: YearMonth) -> list[ContractTerms]:
    """Every contract billable in `month` with the package, firm and payer in effect for it (B-26).

    Ordered by contract id. Two reads: the billable contracts with the terms they were signed
    with, and the (few) later changes up to the month, folded by the pure `terms_in_effect`.
    """
    later: dict[str, list[TermChange]] = defaultdict(list)
    for row in (await session.execute(_later_changes_query(month))).mappings():
        later[row["contract_id"]].append(term_change_from_row(row))
    packages = {p.value: p for p in PackageCode}
    payer_kinds = {k.value: k for k in PayerKind}
    statuses = {s.value: s for s in ContractStatus}
    result = []
    # Tuples, unpacked in the column order of `_terms_query`: at 100,000 rows attribute access shows.
    for (
        contract_id,
        environment_id,
        business_id,
        company_name,
        production_date,
        end_date,
        reseller_partner_id,
        own_use,
        billing_channel,
        billing_email,
        status,
        billing_address,
        einvoice_address,
        billing_contact,
        package_code,
        firm_id,
        firm_business_id,
        payer_kind,
        payer_id,
    ) in (await session.execute(_terms_query(month))).tuples():
        package, payer = packages[package_code], payer_kinds[payer_kind]
        changes = later.get(contract_id)
        if changes:
            signed = EffectiveTerms(package, firm_id, firm_business_id, payer, payer_id)
            effective = terms_in_effect([initial_change(signed, signed_at=_SIGNED), *changes], month)
            package, payer, payer_id = effective.package, effective.payer_kind, effective.payer_id
            firm_id, firm_business_id = effective.accounting_firm_id, effective.accounting_firm_business_id
        result.append(
            ContractTerms(
                contract_id=contract_id,
                environment_id=environment_id,
                business_id=business_id,
                invoice_name=company_name,
                package=package,
                production_date=production_date,
                end_date=end_date,
                payer_kind=payer,
                payer_id=payer_id,
                accounting_firm_id=firm_id,
                accounting_firm_business_id=firm_business_id,
                reseller_partner_id=reseller_partner_id,
                own_use=own_use,
                billing_address=JsonObject(billing_address),  # NOT NULL
                billing_channel=billing_channel,
                einvoice_address=_loads(einvoice_address),
                billing_email=billing_email,
                billing_contact=_loads(billing_contact),
                status=statuses[status],
            )
        )
    return result


#: The signed terms sort first whatever their time (effective_from None); any aware instant will do.
_SIGNED = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


async def contract_terms_of(
    session: AsyncSession, contract_id: str, month: YearMonth
) -> ContractTerms | None:
    """One contract's terms for `month`, billable or not (for the API and the use cases)."""
    contract = (
        (await session.execute(select(t.contracts).where(_C.contract_id == contract_id))).mappings().first()
    )
    if contract is None:
        return None
    return _terms(contract, await term_changes(session, contract_id), month)


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


class ContractTermsRepository:
    """The effective-dated terms of contracts, in the caller's transaction (B-26)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def for_month(self, month: YearMonth) -> list[ContractTerms]:
        """Every contract billable in `month` with the terms in effect for it, by contract id."""
        return await contract_terms_for_month(self._session, month)

    async def of(self, contract_id: str, month: YearMonth) -> ContractTerms | None:
        """One contract's terms for `month`, billable or not."""
        return await contract_terms_of(self._session, contract_id, month)

    async def changes(self, contract_id: str) -> list[TermChange]:
        return await term_changes(self._session, contract_id)

    async def in_effect(self, contract_id: str, month: YearMonth) -> EffectiveTerms:
        """The package, firm and payer of the contract in `month` (B-26)."""
        return terms_in_effect(await term_changes(self._session, contract_id), month)

    async def add(
        self, contract_id: str, change: TermChange, *, change_id: int | None, applied: bool
    ) -> None:
        await add_term_change(self._session, contract_id, change, change_id=change_id, applied=applied)

    async def mark_applied(self, contract_id: str, month: YearMonth) -> None:
        """The changes of `month` and before are reflected in the contract's current state."""
        await mark_terms_applied(self._session, contract_id, month)
