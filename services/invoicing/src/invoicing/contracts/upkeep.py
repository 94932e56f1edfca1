"""Contract changes no command asks for: billing details changed in Procountor (I-02, B-22) and the
passing of time (production reached, contract ended, terms whose month came: B-01, B-26, B-27)."""

from __future__ import annotations

import asyncio

import structlog

from billing_contracts.contracts import BillingChannel
from billing_contracts.procountor import CustomerChangedInProcountorV1
from invoicing.calendar import YearMonth
from invoicing.contracts.changes import (
    SOURCE_PROCOUNTOR,
    SOURCE_SCHEDULE,
    Source,
    announce,
    refresh,
    refresh_and_announce,
)
from invoicing.contracts.domain import ChangeRefusedError, ContractStatus
from invoicing.contracts.repository import ContractRepository
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.database import Session, Sessions

log = structlog.get_logger(__name__)

#: What the scheduled refresh calls a change of status (anything else is terms taking effect).
_STATUS_CHANGES = {ContractStatus.ACTIVE: "production_started", ContractStatus.TERMINATED: "terminated"}
_WATCHED = ("status", "package", "accounting_firm_id", "payer_id")


async def apply_procountor_customer_change(
    session: Session, e: CustomerChangedInProcountorV1, clock: Clock
) -> list[str]:
    """B-22, I-02: the billing address and channel flow into every open contract the payer pays.

    The company name is recorded but never changes the name on invoices (B-22).
    Returns the contracts changed; raises `ChangeRefusedError` when nothing can apply.
    """
    if e.business_id != e.payer_id:
        raise ChangeRefusedError(
            "B-22", f"payer {e.payer_id} is a business ID; the event names {e.business_id}"
        )
    contracts = ContractRepository(session)
    paid = await contracts.open_contracts_paid_by(e.payer_id, today_in_helsinki(clock))
    if not paid:
        raise ChangeRefusedError("B-22", f"no open contract is paid by {e.payer_id}")
    changed = []
    for contract in paid:
        einvoice = (
            e.einvoice_address.model_dump(mode="json")
            if e.einvoice_address is not None
            else contract.einvoice_address
        )
        email = e.billing_email or contract.billing_email
        if e.billing_channel is BillingChannel.EINVOICE and einvoice is None:
            raise ChangeRefusedError("B-20", "the e-invoice channel needs an e-invoice address and operator")
        if e.billing_channel is BillingChannel.EMAIL and email is None:
            raise ChangeRefusedError("B-21", "the email channel needs a billing email")
        values = {
            "billing_address": e.billing_address.model_dump(mode="json"),
            "billing_channel": e.billing_channel,
            "einvoice_address": einvoice,
            "billing_email": email,
        }
        before = contract.fields(values)
        if before == values:
            continue
        await contracts.record_change(
            contract_id=contract.contract_id,
            at=clock.now(),
            change="billing_details_changed_in_procountor",
            details={
                "event": e.model_dump(mode="json"),
                "before": before,
                # B-22: shown in Procountor, not printed on invoices.
                "procountor_company_name": e.company_name,
            },
            requested_by={"source": "procountor", "procountor_customer_id": e.procountor_customer_id},
            source=SOURCE_PROCOUNTOR,
            event_id=e.event_id,
        )
        await refresh_and_announce(
            session, contract.contract_id, clock, change="billing_details_changed", values=values
        )
        changed.append(contract.contract_id)
    return changed


async def refresh_contracts(sessions: Sessions, clock: Clock, *, source: Source = SOURCE_SCHEDULE) -> int:
    """Bring contracts up to today: production reached, contract ended, terms whose month came (B-26, B-27).

    Each contract that changes is announced (`ContractChangedV1`), so partners count it (P-03).
    Idempotent; safe to run from several replicas (row locks). Returns the contracts changed.
    """
    today = today_in_helsinki(clock)
    async with sessions() as session:
        ids = await ContractRepository(session).due_for_refresh(today)
    count = 0
    for contract_id in ids:
        async with sessions.begin() as session:
            contracts = ContractRepository(session)
            if await contracts.get(contract_id, for_update=True) is None:
                continue
            before, after = await refresh(session, contract_id, clock)
            changes = [k for k in _WATCHED if getattr(before, k) != getattr(after, k)]
            if not changes:
                continue
            name = (
                _STATUS_CHANGES.get(after.status, "terms_took_effect")
                if "status" in changes
                else "terms_took_effect"
            )
            await contracts.record_change(
                contract_id=contract_id,
                at=clock.now(),
                change=name,
                details={"before": before.fields(changes), "after": after.fields(changes)},
                effective_from=YearMonth.of(today).first_day,
                source=source,
            )
            await announce(session, after, clock, change=name, effective_from=YearMonth.of(today).first_day)
            count += 1
    if count:
        log.info("contracts_refreshed", count=count, today=today.isoformat())
    return count


async def keep_contracts_current(sessions: Sessions, clock: Clock, *, every_seconds: float = 300.0) -> None:
    """Background loop of the service: `refresh_contracts` every few minutes, failures logged."""
    while True:
        try:
            await refresh_contracts(sessions, clock)
        except Exception:
            log.exception("contract_refresh_failed")
        await asyncio.sleep(every_seconds)
