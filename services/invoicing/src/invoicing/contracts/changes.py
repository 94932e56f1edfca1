"""How every contract change is made, whatever asked for it: open the contract (B-25 requester, row
lock, B-27 ended), schedule an effective-dated change (B-26) or apply one now, audit it, bring the
contract up to today and announce its state (`ContractChangedV1`, P-03) in the same transaction.
The use cases (`service`, `transfers`, `upkeep`) are built from these."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from billing_contracts.base import Message
from billing_contracts.contracts import (
    BillingContact,
    ContractSignedV1,
    EInvoiceAddress,
    PostalAddress,
)
from billing_contracts.contracts import Requester as WireRequester
from billing_contracts.invoicing import ContractChangedV1
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contracts.contract import Contract, signed_contract
from invoicing.contracts.domain import (
    SOURCE_PROCOUNTOR,
    SOURCE_SCHEDULE,
    ChangeRefusedError,
    ContractStatus,
    EffectiveTerms,
    Requester,
    Source,
    TermChange,
    check_payer,
    check_requester,
    effective_month,
    from_http,
    from_kafka,
    initial_change,
)

__all__ = ["SOURCE_PROCOUNTOR", "SOURCE_SCHEDULE", "Source", "from_http", "from_kafka"]
from invoicing.contracts.repository import ContractRepository
from invoicing.contracts.terms_repository import ContractTermsRepository
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.database import Session
from service_runtime.outbox import enqueue, outgoing

PRODUCER = "invoicing"


class ContractNotFoundError(Exception):
    """The command names an environment or contract invoicing does not know."""


@dataclass(frozen=True)
class Accepted:
    """A command applied (or, for B-29, recorded and waiting for the other firm)."""

    contract_id: str
    change: str
    status: ContractStatus
    effective_from: dt.date | None = None
    pending: bool = False
    new_contract_id: str | None = None


def requester(wire: WireRequester) -> Requester:
    return Requester(
        person_name=wire.person_name,
        role=wire.role,
        has_basic_info_and_user_rights=wire.has_basic_info_and_user_rights,
        is_signatory=wire.is_signatory,
    )


def requested_by_of(command: Message) -> Any:
    """The requester a command carries, for the audit (signing and production dates carry none)."""
    for field in ("requested_by", "approved_by"):
        value = getattr(command, field, None)
        if isinstance(value, WireRequester):
            return value.model_dump(mode="json")
    return None


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values for the audit's JSON: dates as ISO text."""
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}


# --- current state and its announcement ---


def contract_changed(
    contract: Contract, *, change: str, clock: Clock, effective_from: dt.date | None = None
) -> ContractChangedV1:
    """The contract's state now, as partners and others follow it (P-03)."""
    return ContractChangedV1(
        event_id=uuid.uuid4(),
        occurred_at=clock.now(),
        producer=PRODUCER,
        contract_id=contract.contract_id,
        environment_id=contract.environment_id,
        business_id=contract.business_id,
        company_name=contract.company_name,
        status=contract.status,
        package=contract.package,
        production_date=contract.production_date,
        end_date=contract.end_date,
        accounting_firm_id=contract.accounting_firm_id,
        reseller_partner_id=contract.reseller_partner_id,
        own_use=contract.own_use,
        change=change,
        effective_from=effective_from,
        data_retained_until=contract.data_retained_until,
        payer_kind=contract.payer_kind,
        payer_id=contract.payer_id,
        accounting_firm_business_id=contract.accounting_firm_business_id,
        predecessor_contract_id=contract.predecessor_contract_id,
        successor_contract_id=contract.successor_contract_id,
        # I-02: the billing data now, so that procountor-sync updates the Procountor customer soon
        # after a change of ours (B-22, B-24), not with the payer's next invoice.
        billing_address=PostalAddress.model_validate(contract.billing_address),
        billing_channel=contract.billing_channel,
        einvoice_address=None
        if contract.einvoice_address is None
        else EInvoiceAddress.model_validate(contract.einvoice_address),
        billing_email=contract.billing_email,
        billing_contact=None
        if contract.billing_contact is None
        else BillingContact.model_validate(contract.billing_contact),
    )


async def announce(
    session: Session, contract: Contract, clock: Clock, *, change: str, effective_from: dt.date | None = None
) -> None:
    """Put the contract's state in the outbox, in the transaction that changed it."""
    message = contract_changed(contract, change=change, clock=clock, effective_from=effective_from)
    await enqueue(session, t.runtime_tables.outbox, [outgoing(message)], clock)


async def refresh(
    session: Session, contract_id: str, clock: Clock, *, values: Mapping[str, Any] | None = None
) -> tuple[Contract, Contract]:
    """Set `values`, then bring status and the terms in effect this month up to date; before and after.

    The contract holds the state of today (Helsinki); term changes from later months stay in
    `contract_terms` until their month comes (B-26).
    """
    today = today_in_helsinki(clock)
    month = YearMonth.of(today)
    contracts = ContractRepository(session)
    before = await contracts.get(contract_id)
    if before is None:
        raise ContractNotFoundError(f"no contract {contract_id}")
    terms = ContractTermsRepository(session)
    after = before.changed(**(values or {})).in_effect(
        await terms.in_effect(contract_id, month), today=today, now=clock.now()
    )
    await contracts.save(before, after)
    await terms.mark_applied(contract_id, month)
    return before, after


async def refresh_and_announce(
    session: Session,
    contract_id: str,
    clock: Clock,
    *,
    change: str,
    values: Mapping[str, Any] | None = None,
    effective_from: dt.date | None = None,
) -> Contract:
    """`refresh`, then announce the new state as `change`; the new state."""
    _, after = await refresh(session, contract_id, clock, values=values)
    await announce(session, after, clock, change=change, effective_from=effective_from)
    return after


async def terms_by_cut_off(session: Session, contract_id: str, received_at: dt.datetime) -> EffectiveTerms:
    """The terms in effect for the month a request received at `received_at` takes effect in (B-26)."""
    return await ContractTermsRepository(session).in_effect(contract_id, effective_month(received_at))


async def add_signed_contract(
    session: Session, c: ContractSignedV1, clock: Clock, *, predecessor_contract_id: str | None = None
) -> Contract:
    """Store the contract a `ContractSignedV1` creates, with its signed terms and audit (B-01, B-17)."""
    now = clock.now()
    contract = signed_contract(
        c, today=today_in_helsinki(clock), now=now, predecessor_contract_id=predecessor_contract_id
    )
    contracts = ContractRepository(session)
    if not await contracts.add(contract):
        raise ChangeRefusedError("B-28", f"environment {c.environment_id} already has a contract")
    check_payer(contract.terms, business_id=c.business_id)
    change_id = await contracts.record_change(
        contract_id=contract.contract_id,
        at=now,
        change="signed",
        details=c.model_dump(mode="json"),
        effective_from=YearMonth.of(c.production_date).first_day,
        event_id=c.event_id,
    )
    await ContractTermsRepository(session).add(
        contract.contract_id, initial_change(contract.terms, signed_at=now), change_id=change_id, applied=True
    )
    return contract


# --- opening a contract for a change ---


async def locked(session: Session, environment_id: str) -> Contract:
    """The environment's contract, row-locked for the change."""
    contract = await ContractRepository(session).of_environment(environment_id, for_update=True)
    if contract is None:
        raise ContractNotFoundError(f"environment {environment_id} has no contract")
    return contract


async def open_contract(
    session: Session, environment_id: str, clock: Clock, *, requested_by: WireRequester | None
) -> Contract:
    """The contract a change is for, locked, once its requester may ask (B-25); refused after its end (B-27).

    `requested_by` is None only for commands from sales systems, which carry no requester.
    """
    if requested_by is not None:
        check_requester(requester(requested_by))
    contract = await locked(session, environment_id)
    contract.refuse_if_ended(today_in_helsinki(clock))
    return contract


# --- applying a change ---


async def schedule(
    session: Session,
    contract: Contract,
    change: TermChange,
    command: Message,
    clock: Clock,
    *,
    name: str,
    source: Source,
    details: Mapping[str, Any] | None = None,
) -> Accepted:
    """Record an effective-dated change (B-26), check the payer it leaves (B-17), announce the state."""
    contracts = ContractRepository(session)
    terms = ContractTermsRepository(session)
    month = change.effective_from
    assert month is not None
    note = None
    billed = await contracts.last_billed_month(contract.environment_id)
    if billed is not None and month <= billed:
        # An issued invoice is never reopened: a change processed after its month was billed
        # applies from the first month not billed yet, and the audit says so.
        later = billed.next()
        if contract.end_date is not None and later.first_day > contract.end_date:
            raise ChangeRefusedError(
                "B-26", f"{month}…{billed} are already invoiced and the contract ends on {contract.end_date}"
            )
        note = f"{month} is already invoiced; the change applies from {later}"
        change = dataclasses.replace(change, effective_from=later)
        month = later
    after = change.apply_to(await terms.in_effect(contract.contract_id, month))
    check_payer(after, business_id=contract.business_id)
    change_id = await contracts.record_change(
        contract_id=contract.contract_id,
        at=clock.now(),
        change=name,
        details=dict(details or command.model_dump(mode="json")),
        requested_by=requested_by_of(command),
        reason=note,
        effective_from=month.first_day,
        source=source,
        event_id=command.event_id,
    )
    current_month = YearMonth.of(today_in_helsinki(clock))
    await terms.add(contract.contract_id, change, change_id=change_id, applied=month <= current_month)
    new = await refresh_and_announce(
        session, contract.contract_id, clock, change=name, effective_from=month.first_day
    )
    return Accepted(
        contract_id=contract.contract_id, change=name, status=new.status, effective_from=month.first_day
    )


async def audit_and_announce(
    session: Session,
    contract: Contract,
    command: Message,
    clock: Clock,
    *,
    name: str,
    values: Mapping[str, Any],
    source: Source,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Accepted:
    """Apply a change that is not effective-dated: audit it, write it, announce the state."""
    before = contract.fields(values)
    await ContractRepository(session).record_change(
        contract_id=contract.contract_id,
        at=clock.now(),
        change=name,
        details={"command": command.model_dump(mode="json"), "before": plain(before), **(details or {})},
        requested_by=requested_by_of(command),
        reason=reason,
        source=source,
        event_id=command.event_id,
    )
    new = await refresh_and_announce(session, contract.contract_id, clock, change=name, values=values)
    return Accepted(contract_id=contract.contract_id, change=name, status=new.status)
