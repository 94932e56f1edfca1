"""Contracts in PostgreSQL: the contract aggregate (loaded, locked, saved), the B-29 approvals waiting
for the other firm, and the audit of every change and refusal. The terms per month are in
`contracts.terms_repository`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import RowMapping, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.contracts import ApprovingFirm, BillingChannel, PayerKind
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contracts.contract import Contract
from invoicing.contracts.domain import ContractStatus, FirmApproval, PendingFirmChange, Source
from invoicing.prices.domain import PackageCode

_C = t.contracts.c
_T = t.contract_terms.c
_F = t.tallennus_firm_changes.c
_FIELDS = tuple(f.name for f in dataclasses.fields(Contract))


def _contract(row: RowMapping) -> Contract:
    values = {name: row[name] for name in _FIELDS}
    return Contract(
        **values
        | {
            "package": PackageCode(row["package"]),
            "payer_kind": PayerKind(row["payer_kind"]),
            "billing_channel": BillingChannel(row["billing_channel"]),
            "status": ContractStatus(row["status"]),
        }
    )


def _row(contract: Contract) -> dict[str, Any]:
    row = {name: getattr(contract, name) for name in _FIELDS}
    for name in ("package", "payer_kind", "billing_channel", "status"):
        row[name] = str(row[name])  # StrEnum members: their value
    return row


def _approval_json(a: FirmApproval | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "side": a.side.value,
        "approved_at": a.approved_at.isoformat(),
        "approved_by": a.approved_by,
        "new_package": None if a.new_package is None else a.new_package.value,
        "new_firm_business_id": a.new_firm_business_id,
    }


def _approval(data: Mapping[str, Any] | None) -> FirmApproval | None:
    if data is None:
        return None
    return FirmApproval(
        side=ApprovingFirm(data["side"]),
        approved_at=dt.datetime.fromisoformat(data["approved_at"]),
        approved_by=data["approved_by"],
        new_package=None if data["new_package"] is None else PackageCode(data["new_package"]),
        new_firm_business_id=data["new_firm_business_id"],
    )


def approval_json(a: FirmApproval | None) -> dict[str, Any] | None:
    """A B-29 approval as the audit and the API show it."""
    return _approval_json(a)


class ContractRepository:
    """Loads and saves contracts in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- the aggregate ---

    async def _one(self, condition: Any, *, for_update: bool) -> Contract | None:
        query = select(t.contracts).where(condition)
        if for_update:
            query = query.with_for_update()
        row = (await self._session.execute(query)).mappings().first()
        return None if row is None else _contract(row)

    async def get(self, contract_id: str, *, for_update: bool = False) -> Contract | None:
        """The contract (row-locked until the transaction ends, for a change), if it exists."""
        return await self._one(_C.contract_id == contract_id, for_update=for_update)

    async def of_environment(self, environment_id: str, *, for_update: bool = False) -> Contract | None:
        """The environment's contract (one per environment), if it has one."""
        return await self._one(_C.environment_id == environment_id, for_update=for_update)

    async def add(self, contract: Contract) -> bool:
        """Store a new contract; False if the environment has one already."""
        created = await self._session.scalar(
            insert(t.contracts).values(_row(contract)).on_conflict_do_nothing().returning(_C.contract_id)
        )
        return created is not None

    async def save(self, before: Contract, after: Contract) -> None:
        """Store what changed between two states of one contract."""
        changed = before.differences(after)
        if changed:
            values = _row(after)
            await self._session.execute(
                update(t.contracts)
                .where(_C.contract_id == after.contract_id)
                .values({name: values[name] for name in changed})
            )

    async def open_contracts_paid_by(self, payer_id: str, today: dt.date) -> list[Contract]:
        """The payer's contracts not ended before `today`, locked, by contract id (I-02)."""
        rows = await self._session.execute(
            select(t.contracts)
            .where(_C.payer_id == payer_id)
            .where((_C.end_date.is_(None)) | (_C.end_date >= today))
            .order_by(_C.contract_id)
            .with_for_update()
        )
        return [_contract(r) for r in rows.mappings().all()]

    async def find(
        self,
        *,
        environment_id: str | None,
        business_id: str | None,
        payer_id: str | None,
        status: str | None,
        limit: int,
        after: str | None,
    ) -> list[Contract]:
        """Contracts by environment, business ID, payer and status, in contract-id order (keyset paging)."""
        query = select(t.contracts).order_by(_C.contract_id).limit(limit)
        for column, value in (
            (_C.environment_id, environment_id),
            (_C.business_id, business_id),
            (_C.payer_id, payer_id),
            (_C.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        if after is not None:
            query = query.where(_C.contract_id > after)
        return [_contract(r) for r in (await self._session.execute(query)).mappings()]

    async def due_for_refresh(self, today: dt.date) -> list[str]:
        """Contracts whose current state lags `today`: production reached, ended, or terms now in effect."""
        month = YearMonth.of(today)
        lagging_status = select(_C.contract_id).where(
            or_(
                and_(_C.status == ContractStatus.SIGNED.value, _C.production_date <= today),
                and_(_C.status != ContractStatus.TERMINATED.value, _C.end_date < today),
            )
        )
        pending_terms = select(_T.contract_id).where(
            _T.applied.is_(False), _T.effective_from <= month.first_day
        )
        ids = (await self._session.execute(lagging_status.union(pending_terms))).scalars().all()
        return sorted(ids)

    async def last_billed_month(self, environment_id: str) -> YearMonth | None:
        """The latest month billed for the environment (invoiced or held), if any."""
        b = t.billed_environment_months.c
        month = await self._session.scalar(
            select(func.max(b.month)).where(b.environment_id == environment_id)
        )
        return None if month is None else YearMonth.parse(str(month))

    async def known_business_id_of_firm(self, firm_id: str) -> str | None:
        """An accounting firm's business ID, as another contract of the firm names it."""
        found = await self._session.scalar(
            select(_C.accounting_firm_business_id)
            .where(_C.accounting_firm_id == firm_id, _C.accounting_firm_business_id.is_not(None))
            .limit(1)
        )
        return None if found is None else str(found)

    # --- B-29: a Tallennus firm change waiting for the other firm's approval ---

    async def pending_firm_change(self, contract_id: str) -> PendingFirmChange | None:
        row = (
            (
                await self._session.execute(
                    select(t.tallennus_firm_changes).where(_F.contract_id == contract_id)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return PendingFirmChange(
            old_firm_id=row["old_accounting_firm_id"],
            new_firm_id=row["new_accounting_firm_id"],
            old_approval=_approval(row["old_approval"]),
            new_approval=_approval(row["new_approval"]),
        )

    async def pending_firm_change_row(self, contract_id: str) -> dict[str, Any] | None:
        """The waiting change as stored (for the API)."""
        row = (
            (
                await self._session.execute(
                    select(t.tallennus_firm_changes).where(_F.contract_id == contract_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else dict(row)

    async def save_pending_firm_change(
        self, contract_id: str, pending: PendingFirmChange, now: dt.datetime
    ) -> None:
        values = {
            "old_accounting_firm_id": pending.old_firm_id,
            "new_accounting_firm_id": pending.new_firm_id,
            "old_approval": _approval_json(pending.old_approval),
            "new_approval": _approval_json(pending.new_approval),
            "updated_at": now,
        }
        stmt = insert(t.tallennus_firm_changes).values(contract_id=contract_id, **values)
        await self._session.execute(stmt.on_conflict_do_update(index_elements=[_F.contract_id], set_=values))

    async def remove_pending_firm_change(self, contract_id: str) -> None:
        await self._session.execute(delete(t.tallennus_firm_changes).where(_F.contract_id == contract_id))

    # --- the audit (B-25: refusals are logged too) ---

    async def record_change(
        self,
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
        source: Source | None = None,
        event_id: uuid.UUID | None = None,
    ) -> int:
        """Audit one change or refusal: who, when, what, why; the audit row's id."""
        change_id = await self._session.scalar(
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
                source=None if source is None else source.channel,
                asserted_by=None if source is None else source.asserted_by,
                event_id=event_id,
            )
            .returning(t.contract_changes.c.id)
        )
        return int(change_id or 0)

    async def history(self, contract_id: str) -> list[dict[str, Any]]:
        """Every change and refusal of the contract, oldest first."""
        rows = await self._session.execute(
            select(t.contract_changes)
            .where(t.contract_changes.c.contract_id == contract_id)
            .order_by(t.contract_changes.c.id)
        )
        return [dict(r) for r in rows.mappings()]
