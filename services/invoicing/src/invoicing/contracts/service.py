"""Contract use cases: sign, change, terminate; each in one transaction with its audit and outbox rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    ApprovingFirm,
    BillingChannel,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    PackageChangeRequestedV1,
    PayerKind,
    ProductionStartedV1,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from billing_contracts.contracts import Requester as WireRequester
from billing_contracts.invoicing import ChangeRequestRefusedV1, ContractChangedV1
from billing_contracts.procountor import CustomerChangedInProcountorV1
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contracts import repository as repo
from invoicing.contracts.domain import (
    ChangeRefusedError,
    ContractStatus,
    EffectiveTerms,
    FirmApproval,
    PendingFirmChange,
    Requester,
    TermChange,
    Termination,
    accounting_firm_change,
    check_name_change,
    check_payer,
    check_requester,
    completed_firm_change,
    effective_month,
    helsinki_date,
    initial_change,
    package_change,
    record_firm_approval,
    status_on,
    termination,
    terms_in_effect,
)
from invoicing.prices.domain import PackageCode
from invoicing.references import is_valid_business_id
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.consumer import Rejection
from service_runtime.outbox import OutgoingMessage, enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "invoicing"

#: Contract commands invoicing applies (DueDateChangeRequestedV1 belongs to the billing run, B-23).
ContractCommand = (
    ContractSignedV1
    | ProductionStartedV1
    | PackageChangeRequestedV1
    | AccountingFirmChangeRequestedV1
    | TerminationNoticeGivenV1
    | BusinessIdChangeRequestedV1
    | TallennusFirmChangeApprovedV1
    | BillingContactChangeRequestedV1
    | CompanyNameChangeNoticeGivenV1
    | AdvanceBillingRequestedV1
)
CONTRACT_COMMANDS: tuple[type[Message], ...] = (
    ContractSignedV1,
    ProductionStartedV1,
    PackageChangeRequestedV1,
    AccountingFirmChangeRequestedV1,
    TerminationNoticeGivenV1,
    BusinessIdChangeRequestedV1,
    TallennusFirmChangeApprovedV1,
    BillingContactChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    AdvanceBillingRequestedV1,
)

#: Where a change came from, for the audit.
SOURCE_HTTP = "http"
SOURCE_KAFKA = "kafka"
SOURCE_PROCOUNTOR = "procountor"
SOURCE_SCHEDULE = "schedule"


def contract_id_for(environment_id: str) -> str:
    return f"C-{environment_id}"


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


@dataclass(frozen=True)
class Refused:
    """A command refused by a rule; audited on the contract when there is one."""

    contract_id: str | None
    rule: str
    reason: str


Outcome = Accepted | Refused


def _requester(wire: WireRequester) -> Requester:
    return Requester(
        person_name=wire.person_name,
        role=wire.role,
        has_basic_info_and_user_rights=wire.has_basic_info_and_user_rights,
        is_signatory=wire.is_signatory,
    )


def _json(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


def _requested_by_of(command: Message) -> Any:
    """The requester a command carries, for the audit (signing and production dates carry none)."""
    for field in ("requested_by", "approved_by"):
        value = getattr(command, field, None)
        if isinstance(value, WireRequester):
            return _json(value)
    return None


# ---------------------------------------------------------------- current state and its announcement


def _effective_terms_of(row: Mapping[Any, Any]) -> EffectiveTerms:
    return EffectiveTerms(
        package=PackageCode(row["package"]),
        accounting_firm_id=row["accounting_firm_id"],
        accounting_firm_business_id=row["accounting_firm_business_id"],
        payer_kind=PayerKind(row["payer_kind"]),
        payer_id=row["payer_id"],
    )


def contract_changed(
    row: Mapping[Any, Any], *, change: str, clock: Clock, effective_from: dt.date | None = None
) -> ContractChangedV1:
    """The contract's state now, as partners and others follow it (P-03)."""
    return ContractChangedV1(
        event_id=uuid.uuid4(),
        occurred_at=clock.now(),
        producer=PRODUCER,
        contract_id=row["contract_id"],
        environment_id=row["environment_id"],
        business_id=row["business_id"],
        company_name=row["company_name"],
        status=ContractStatus(row["status"]),
        package=PackageCode(row["package"]),
        production_date=row["production_date"],
        end_date=row["end_date"],
        accounting_firm_id=row["accounting_firm_id"],
        reseller_partner_id=row["reseller_partner_id"],
        own_use=row["own_use"],
        change=change,
        effective_from=effective_from,
        data_retained_until=row["data_retained_until"],
        payer_kind=PayerKind(row["payer_kind"]),
        payer_id=row["payer_id"],
        accounting_firm_business_id=row["accounting_firm_business_id"],
        predecessor_contract_id=row["predecessor_contract_id"],
        successor_contract_id=row["successor_contract_id"],
    )


async def _refresh(
    session: AsyncSession, contract_id: str, clock: Clock, *, values: Mapping[Any, Any] | None = None
) -> dict[str, Any]:
    """Write `values`, then bring status and the terms in effect this month up to date; the new row.

    The contracts row holds the state of today (Helsinki); term changes from later months stay in
    `contract_terms` until their month comes (B-26).
    """
    today = today_in_helsinki(clock)
    month = YearMonth.of(today)
    row = await repo.contract_row(session, contract_id)
    if row is None:
        raise ContractNotFoundError(f"no contract {contract_id}")
    merged = dict(row) | dict(values or {})
    now_terms = await _terms_for(session, contract_id, month)
    merged |= {
        "package": now_terms.package.value,
        "accounting_firm_id": now_terms.accounting_firm_id,
        "accounting_firm_business_id": now_terms.accounting_firm_business_id,
        "payer_kind": now_terms.payer_kind.value,
        "payer_id": now_terms.payer_id,
        "status": status_on(
            today, production_date=merged["production_date"], end_date=merged["end_date"]
        ).value,
        "updated_at": clock.now(),
    }
    changed = {k: v for k, v in merged.items() if row[k] != v}
    if changed:
        await session.execute(
            update(t.contracts).where(t.contracts.c.contract_id == contract_id).values(changed)
        )
    await repo.mark_terms_applied(session, contract_id, month)
    return merged


async def _terms_for(session: AsyncSession, contract_id: str, month: YearMonth) -> EffectiveTerms:
    return terms_in_effect(await repo.term_changes(session, contract_id), month)


async def _terms_by_cut_off(
    session: AsyncSession, contract_id: str, received_at: dt.datetime
) -> EffectiveTerms:
    """The terms in effect for the month a request received at `received_at` takes effect in (B-26)."""
    return await _terms_for(session, contract_id, effective_month(received_at))


async def _announce(
    session: AsyncSession,
    row: Mapping[Any, Any],
    clock: Clock,
    *,
    change: str,
    effective_from: dt.date | None = None,
) -> None:
    """Put the contract's state in the outbox, in the transaction that changed it."""
    message = contract_changed(row, change=change, clock=clock, effective_from=effective_from)
    await enqueue(session, t.runtime_tables.outbox, [outgoing(message)], clock)


async def _refresh_and_announce(
    session: AsyncSession,
    contract_id: str,
    clock: Clock,
    *,
    change: str,
    values: Mapping[Any, Any] | None = None,
    effective_from: dt.date | None = None,
) -> dict[str, Any]:
    """`_refresh`, then announce the new state as `change`; the new row."""
    new = await _refresh(session, contract_id, clock, values=values)
    await _announce(session, new, clock, change=change, effective_from=effective_from)
    return new


# ---------------------------------------------------------------- signing


def _check_contract(c: ContractSignedV1) -> None:
    if not is_valid_business_id(c.business_id):
        raise ChangeRefusedError("B-28", f"business ID {c.business_id} has an invalid check digit")
    if c.payer is PayerKind.ACCOUNTING_FIRM and c.accounting_firm_business_id is None:
        raise ChangeRefusedError(
            "B-17", "payer is the accounting firm but accounting_firm_business_id is missing"
        )
    if c.accounting_firm_business_id is not None and not is_valid_business_id(c.accounting_firm_business_id):
        raise ChangeRefusedError(
            "B-17", f"business ID {c.accounting_firm_business_id} has an invalid check digit"
        )
    if c.package is PackageCode.TALLENNUS and c.payer is not PayerKind.ACCOUNTING_FIRM:
        raise ChangeRefusedError("B-17", "a Tallennus environment is paid by its accounting firm")
    if c.billing_channel is BillingChannel.EINVOICE and c.einvoice_address is None:
        raise ChangeRefusedError("B-20", "billing channel einvoice needs an e-invoice address and operator")
    if c.billing_channel is BillingChannel.EMAIL and c.billing_email is None:
        raise ChangeRefusedError("B-21", "billing channel email needs a billing email")


async def _insert_contract(
    session: AsyncSession, c: ContractSignedV1, clock: Clock, *, predecessor_contract_id: str | None = None
) -> dict[str, Any]:
    now = clock.now()
    contract_id = contract_id_for(c.environment_id)
    payer_id = c.business_id if c.payer is PayerKind.COMPANY else str(c.accounting_firm_business_id)
    status = status_on(today_in_helsinki(clock), production_date=c.production_date, end_date=None)
    row: dict[str, Any] = {
        "contract_id": contract_id,
        "environment_id": c.environment_id,
        "business_id": c.business_id,
        "company_name": c.company_name,
        "package": c.package.value,
        "production_date": c.production_date,
        "end_date": None,
        "payer_kind": c.payer.value,
        "payer_id": payer_id,
        "accounting_firm_id": c.accounting_firm_id,
        "accounting_firm_business_id": c.accounting_firm_business_id,
        "reseller_partner_id": c.reseller_partner_id,
        "own_use": c.own_use,
        "billing_address": _json(c.billing_address),
        "billing_channel": c.billing_channel.value,
        "einvoice_address": _json(c.einvoice_address),
        "billing_email": c.billing_email,
        "billing_contact": _json(c.billing_contact),
        "status": status.value,
        "created_at": now,
        "updated_at": now,
        "notice_given_on": None,
        "termination_reason": None,
        "data_retained_until": None,
        "einvoice_address_ends_on": None,
        "predecessor_contract_id": predecessor_contract_id,
        "successor_contract_id": None,
    }
    created = (
        await session.execute(
            insert(t.contracts).values(row).on_conflict_do_nothing().returning(t.contracts.c.contract_id)
        )
    ).scalar_one_or_none()
    if created is None:
        raise ChangeRefusedError("B-28", f"environment {c.environment_id} already has a contract")
    signed = EffectiveTerms(
        package=c.package,
        accounting_firm_id=c.accounting_firm_id,
        accounting_firm_business_id=c.accounting_firm_business_id,
        payer_kind=c.payer,
        payer_id=payer_id,
    )
    check_payer(signed, business_id=c.business_id)
    change_id = await repo.record_change(
        session,
        contract_id=contract_id,
        at=now,
        change="signed",
        details=c.model_dump(mode="json"),
        effective_from=YearMonth.of(c.production_date).first_day,
        event_id=c.event_id,
    )
    await repo.add_term_change(
        session, contract_id, initial_change(signed, signed_at=now), change_id=change_id, applied=True
    )
    return row


async def sign_contract(session: AsyncSession, c: ContractSignedV1, clock: Clock) -> str:
    """Create the contract of an environment (B-01, B-17); refuse a second one for the same environment."""
    _check_contract(c)
    row = await _insert_contract(session, c, clock)
    await _announce(session, row, clock, change="signed")
    return str(row["contract_id"])


# ---------------------------------------------------------------- changes


async def _locked(session: AsyncSession, environment_id: str) -> Mapping[Any, Any]:
    row = await repo.contract_row_of_environment(session, environment_id, for_update=True)
    if row is None:
        raise ContractNotFoundError(f"environment {environment_id} has no contract")
    return row


def _refuse_if_terminated(row: Mapping[Any, Any], today: dt.date) -> None:
    end = row["end_date"]
    if end is not None and end < today:
        raise ChangeRefusedError("B-27", f"the contract ended on {end.isoformat()}")


async def _open_contract(
    session: AsyncSession, environment_id: str, clock: Clock, *, requested_by: WireRequester | None
) -> Mapping[Any, Any]:
    """The contract a change is for, locked, once its requester may ask (B-25); refused after its end (B-27).

    `requested_by` is None only for commands from sales systems, which carry no requester.
    """
    if requested_by is not None:
        check_requester(_requester(requested_by))
    row = await _locked(session, environment_id)
    _refuse_if_terminated(row, today_in_helsinki(clock))
    return row


async def _schedule(
    session: AsyncSession,
    row: Mapping[Any, Any],
    change: TermChange,
    command: Message,
    clock: Clock,
    *,
    name: str,
    source: str,
    details: Mapping[Any, Any] | None = None,
) -> Accepted:
    """Record an effective-dated change (B-26), check the payer it leaves (B-17), announce the state."""
    contract_id = row["contract_id"]
    month = change.effective_from
    assert month is not None
    note = None
    billed = await repo.last_billed_month(session, row["environment_id"])
    if billed is not None and month <= billed:
        # An issued invoice is never reopened: a change processed after its month was billed
        # applies from the first month not billed yet, and the audit says so.
        later = billed.next()
        if row["end_date"] is not None and later.first_day > row["end_date"]:
            raise ChangeRefusedError(
                "B-26", f"{month}…{billed} are already invoiced and the contract ends on {row['end_date']}"
            )
        note = f"{month} is already invoiced; the change applies from {later}"
        change = replace(change, effective_from=later)
        month = later
    after = change.apply_to(await _terms_for(session, contract_id, month))
    check_payer(after, business_id=row["business_id"])
    change_id = await repo.record_change(
        session,
        contract_id=contract_id,
        at=clock.now(),
        change=name,
        details=dict(details or command.model_dump(mode="json")),
        requested_by=_requested_by_of(command),
        reason=note,
        effective_from=month.first_day,
        source=source,
        event_id=command.event_id,
    )
    current_month = YearMonth.of(today_in_helsinki(clock))
    await repo.add_term_change(
        session, contract_id, change, change_id=change_id, applied=month <= current_month
    )
    new = await _refresh_and_announce(
        session, contract_id, clock, change=name, effective_from=month.first_day
    )
    return Accepted(
        contract_id=contract_id,
        change=name,
        status=ContractStatus(new["status"]),
        effective_from=month.first_day,
    )


async def _audit_and_announce(
    session: AsyncSession,
    row: Mapping[Any, Any],
    command: Message,
    clock: Clock,
    *,
    name: str,
    values: Mapping[Any, Any],
    source: str,
    reason: str | None = None,
    details: Mapping[Any, Any] | None = None,
) -> Accepted:
    """Apply a change that is not effective-dated: audit it, write it, announce the state."""
    contract_id = row["contract_id"]
    before = {k: row[k] for k in values}
    await repo.record_change(
        session,
        contract_id=contract_id,
        at=clock.now(),
        change=name,
        details={"command": command.model_dump(mode="json"), "before": _plain(before), **(details or {})},
        requested_by=_requested_by_of(command),
        reason=reason,
        source=source,
        event_id=command.event_id,
    )
    new = await _refresh_and_announce(session, contract_id, clock, change=name, values=values)
    return Accepted(contract_id=contract_id, change=name, status=ContractStatus(new["status"]))


def _plain(values: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}


async def _production_started(
    session: AsyncSession, c: ProductionStartedV1, clock: Clock, source: str
) -> Accepted:
    row = await _open_contract(session, c.environment_id, clock, requested_by=None)
    end = row["end_date"]
    if end is not None and c.production_date > end:
        raise ChangeRefusedError(
            "B-27", f"the contract ends on {end.isoformat()}, before {c.production_date.isoformat()}"
        )
    return await _audit_and_announce(
        session,
        row,
        c,
        clock,
        name="production_date_set",
        values={"production_date": c.production_date},
        source=source,
    )


async def _package_changed(
    session: AsyncSession, c: PackageChangeRequestedV1, clock: Clock, source: str
) -> Accepted:
    row = await _open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    change = package_change(
        await _terms_by_cut_off(session, row["contract_id"], c.requested_at),
        kind=c.change_kind,
        new_package=c.new_package,
        requested_at=c.requested_at,
        business_id=row["business_id"],
        end_date=row["end_date"],
    )
    return await _schedule(
        session, row, change, c, clock, name=f"{c.change_kind.value}_changed", source=source
    )


async def _firm_changed(
    session: AsyncSession, c: AccountingFirmChangeRequestedV1, clock: Clock, source: str
) -> Accepted:
    row = await _open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    change = accounting_firm_change(
        await _terms_by_cut_off(session, row["contract_id"], c.requested_at),
        new_firm_id=c.new_accounting_firm_id,
        new_firm_business_id=c.new_accounting_firm_business_id,
        requested_at=c.requested_at,
        end_date=row["end_date"],
    )
    return await _schedule(session, row, change, c, clock, name="accounting_firm_changed", source=source)


def _ending(ends: Termination, *, reason: str | None) -> dict[str, Any]:
    """The contract row's columns for an end by notice (B-27)."""
    return {
        "notice_given_on": ends.notice_given_on,
        "end_date": ends.end_date,
        "data_retained_until": ends.data_retained_until,
        "termination_reason": reason,
    }


async def _terminated(
    session: AsyncSession, c: TerminationNoticeGivenV1, clock: Clock, source: str
) -> Accepted:
    check_requester(_requester(c.requested_by))
    row = await _locked(session, c.environment_id)
    if row["end_date"] is not None:
        raise ChangeRefusedError(
            "B-27",
            f"notice was already given on {row['notice_given_on']}; the contract ends on {row['end_date']}",
        )
    return await _audit_and_announce(
        session,
        row,
        c,
        clock,
        name="termination_noticed",
        values=_ending(termination(c.notice_given_at), reason=c.reason),
        source=source,
        reason=c.reason,
    )


def _successor_channel(row: Mapping[Any, Any], c: BusinessIdChangeRequestedV1) -> tuple[str, Any]:
    # B-28: e-invoice addresses are per business ID; without one for the new ID, email or paper.
    if c.new_einvoice_address is not None:
        return BillingChannel.EINVOICE.value, _json(c.new_einvoice_address)
    if row["billing_channel"] != BillingChannel.EINVOICE.value:
        return str(row["billing_channel"]), None
    return (BillingChannel.EMAIL.value if row["billing_email"] else BillingChannel.PAPER.value), None


async def _business_id_changed(
    session: AsyncSession, c: BusinessIdChangeRequestedV1, clock: Clock, source: str
) -> Accepted:
    """B-28: a new contract for the new business ID and environment; the old one ends by B-27."""
    row = await _open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    if c.new_business_id == row["business_id"]:
        raise ChangeRefusedError("B-28", f"the contract already has the business ID {c.new_business_id}")
    if c.new_environment_id == c.environment_id:
        raise ChangeRefusedError("B-28", "a new business ID needs a new environment")
    if row["successor_contract_id"] is not None:
        raise ChangeRefusedError(
            "B-28", f"the contract was already replaced by {row['successor_contract_id']}"
        )
    start = helsinki_date(c.requested_at)
    old_terms = await _terms_for(session, row["contract_id"], YearMonth.of(start))
    successor: Mapping[Any, Any] | None = await repo.contract_row_of_environment(
        session, c.new_environment_id, for_update=True
    )
    if successor is None:
        channel, einvoice = _successor_channel(row, c)
        signed = ContractSignedV1.model_validate(
            {
                "event_id": c.event_id,
                "occurred_at": c.occurred_at,
                "producer": c.producer,
                "environment_id": c.new_environment_id,
                "business_id": c.new_business_id,
                "company_name": c.new_company_name,
                "package": old_terms.package,
                "production_date": start,
                "payer": old_terms.payer_kind,
                "accounting_firm_id": old_terms.accounting_firm_id,
                "accounting_firm_business_id": old_terms.accounting_firm_business_id,
                "reseller_partner_id": row["reseller_partner_id"],
                "own_use": row["own_use"],
                "billing_address": row["billing_address"],
                "billing_channel": channel,
                "einvoice_address": einvoice,
                "billing_email": row["billing_email"],
                "billing_contact": row["billing_contact"],
            }
        )
        _check_contract(signed)
        successor = await _insert_contract(session, signed, clock, predecessor_contract_id=row["contract_id"])
    elif successor["predecessor_contract_id"] not in (None, row["contract_id"]):
        raise ChangeRefusedError(
            "B-28", f"environment {c.new_environment_id} already replaces another contract"
        )
    elif successor["business_id"] != c.new_business_id:
        raise ChangeRefusedError(
            "B-28",
            f"environment {c.new_environment_id} has a contract for {successor['business_id']}, not {c.new_business_id}",
        )
    new_id = str(successor["contract_id"])
    reason = f"business ID changed to {c.new_business_id}"
    ends = termination(c.requested_at)
    keep_end = row["end_date"] is not None and row["end_date"] <= ends.end_date
    values: dict[str, Any] = {"successor_contract_id": new_id}
    if keep_end:
        values["einvoice_address_ends_on"] = row["end_date"] if row["einvoice_address"] else None
    else:
        values |= _ending(ends, reason=reason)
        values["einvoice_address_ends_on"] = ends.end_date if row["einvoice_address"] else None
    old = await _audit_and_announce(
        session,
        row,
        c,
        clock,
        name="business_id_changed",
        values=values,
        source=source,
        reason=reason,
        details={"successor_contract_id": new_id},
    )
    await _refresh_and_announce(
        session,
        new_id,
        clock,
        change="signed_for_new_business_id",
        values={"predecessor_contract_id": row["contract_id"]},
    )
    return replace(old, new_contract_id=new_id)


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


def _approval_from(data: Mapping[Any, Any] | None) -> FirmApproval | None:
    if data is None:
        return None
    return FirmApproval(
        side=ApprovingFirm(data["side"]),
        approved_at=dt.datetime.fromisoformat(data["approved_at"]),
        approved_by=data["approved_by"],
        new_package=None if data["new_package"] is None else PackageCode(data["new_package"]),
        new_firm_business_id=data["new_firm_business_id"],
    )


async def _known_business_id_of_firm(session: AsyncSession, firm_id: str) -> str | None:
    found = await session.scalar(
        select(t.contracts.c.accounting_firm_business_id)
        .where(
            t.contracts.c.accounting_firm_id == firm_id,
            t.contracts.c.accounting_firm_business_id.is_not(None),
        )
        .limit(1)
    )
    return None if found is None else str(found)


async def _tallennus_firm_approved(
    session: AsyncSession, c: TallennusFirmChangeApprovedV1, clock: Clock, source: str
) -> Accepted:
    """B-29: record one firm's approval; with both recorded, the move takes effect by B-26."""
    row = await _open_contract(session, c.environment_id, clock, requested_by=c.approved_by)
    contract_id = row["contract_id"]
    stored = await repo.pending_tallennus_firm_change(session, contract_id)
    pending = (
        None
        if stored is None
        else PendingFirmChange(
            old_firm_id=stored["old_accounting_firm_id"],
            new_firm_id=stored["new_accounting_firm_id"],
            old_approval=_approval_from(stored["old_approval"]),
            new_approval=_approval_from(stored["new_approval"]),
        )
    )
    approval = FirmApproval(
        side=c.approving_firm,
        approved_at=c.approved_at,
        approved_by=c.approved_by.person_name,
        new_package=c.new_package,
        new_firm_business_id=c.new_accounting_firm_business_id,
    )
    pending = record_firm_approval(
        pending,
        await _terms_by_cut_off(session, contract_id, c.approved_at),
        old_firm_id=c.old_accounting_firm_id,
        new_firm_id=c.new_accounting_firm_id,
        approval=approval,
    )
    if not pending.is_complete:
        values = {
            "old_accounting_firm_id": pending.old_firm_id,
            "new_accounting_firm_id": pending.new_firm_id,
            "old_approval": _approval_json(pending.old_approval),
            "new_approval": _approval_json(pending.new_approval),
            "updated_at": clock.now(),
        }
        stmt = insert(t.tallennus_firm_changes).values(contract_id=contract_id, **values)
        await session.execute(
            stmt.on_conflict_do_update(index_elements=[t.tallennus_firm_changes.c.contract_id], set_=values)
        )
        await repo.record_change(
            session,
            contract_id=contract_id,
            at=clock.now(),
            change="tallennus_firm_change_approved",
            details=c.model_dump(mode="json"),
            requested_by=_requested_by_of(c),
            outcome="pending",
            reason=f"waiting for the {'new' if c.approving_firm is ApprovingFirm.OLD else 'old'} firm's approval (B-29)",
            source=source,
            event_id=c.event_id,
        )
        return Accepted(
            contract_id=contract_id,
            change="tallennus_firm_change_approved",
            status=ContractStatus(row["status"]),
            pending=True,
        )
    assert pending.new_approval is not None
    business_id = pending.new_approval.new_firm_business_id or await _known_business_id_of_firm(
        session, pending.new_firm_id
    )
    change = completed_firm_change(pending, end_date=row["end_date"], new_firm_business_id=business_id)
    await session.execute(
        delete(t.tallennus_firm_changes).where(t.tallennus_firm_changes.c.contract_id == contract_id)
    )
    details = {
        "command": c.model_dump(mode="json"),
        "old_approval": _approval_json(pending.old_approval),
        "new_approval": _approval_json(pending.new_approval),
    }
    return await _schedule(
        session,
        row,
        change,
        c,
        clock,
        name="tallennus_firm_changed",
        source=source,
        details=details,
    )


async def _contact_changed(
    session: AsyncSession, c: BillingContactChangeRequestedV1, clock: Clock, source: str
) -> Accepted:
    """B-24: a written notice with name, phone and email (the contract enforces all three)."""
    row = await _open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    return await _audit_and_announce(
        session,
        row,
        c,
        clock,
        name="billing_contact_changed",
        values={"billing_contact": _json(c.new_contact)},
        source=source,
    )


async def _name_changed(
    session: AsyncSession, c: CompanyNameChangeNoticeGivenV1, clock: Clock, source: str
) -> Accepted:
    """B-22: only a change notice with the old and the new name changes the name on invoices."""
    row = await _open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    check_name_change(
        current_name=row["company_name"], old_name=c.old_company_name, new_name=c.new_company_name
    )
    return await _audit_and_announce(
        session,
        row,
        c,
        clock,
        name="company_name_changed",
        values={"company_name": c.new_company_name},
        source=source,
    )


def _advance_billing(c: AdvanceBillingRequestedV1) -> None:
    raise ChangeRefusedError(
        "B-04",
        f"billing is in arrears, by actual use; months {c.from_month}…{c.to_month} cannot be billed in advance",
    )


async def _apply(session: AsyncSession, command: Message, clock: Clock, source: str) -> Accepted:
    match command:
        case ContractSignedV1():
            contract_id = await sign_contract(session, command, clock)
            return Accepted(
                contract_id=contract_id,
                change="signed",
                status=status_on(
                    today_in_helsinki(clock), production_date=command.production_date, end_date=None
                ),
                effective_from=YearMonth.of(command.production_date).first_day,
            )
        case ProductionStartedV1():
            return await _production_started(session, command, clock, source)
        case PackageChangeRequestedV1():
            return await _package_changed(session, command, clock, source)
        case AccountingFirmChangeRequestedV1():
            return await _firm_changed(session, command, clock, source)
        case TerminationNoticeGivenV1():
            return await _terminated(session, command, clock, source)
        case BusinessIdChangeRequestedV1():
            return await _business_id_changed(session, command, clock, source)
        case TallennusFirmChangeApprovedV1():
            return await _tallennus_firm_approved(session, command, clock, source)
        case BillingContactChangeRequestedV1():
            return await _contact_changed(session, command, clock, source)
        case CompanyNameChangeNoticeGivenV1():
            return await _name_changed(session, command, clock, source)
        case AdvanceBillingRequestedV1():
            _advance_billing(command)
    raise TypeError(f"unsupported command {type(command).__name__}")


async def handle_contract_command(
    session: AsyncSession, command: Message, clock: Clock, *, source: str
) -> Outcome:
    """Apply one contract command inside the caller's transaction: `Accepted`, or `Refused` with the rule.

    A refusal undoes everything the command started (a savepoint) and is audited on the
    contract, with the requester, when the contract exists (B-25: refusals are logged).
    """
    try:
        async with session.begin_nested():
            return await _apply(session, command, clock, source)
    except ChangeRefusedError as refusal:
        environment_id = getattr(command, "environment_id", None)
        row = (
            None
            if environment_id is None
            else await repo.contract_row_of_environment(session, str(environment_id))
        )
        contract_id = None if row is None else str(row["contract_id"])
        if contract_id is not None:
            await repo.record_change(
                session,
                contract_id=contract_id,
                at=clock.now(),
                change=command.message_type.removeprefix("contracts."),
                details=command.model_dump(mode="json"),
                requested_by=_requested_by_of(command),
                outcome="refused",
                rule=refusal.rule,
                reason=refusal.reason,
                source=source,
                event_id=command.event_id,
            )
        log.info(
            "contract_command_refused",
            message_type=command.message_type,
            environment_id=environment_id,
            rule=refusal.rule,
            reason=refusal.reason,
        )
        return Refused(contract_id=contract_id, rule=refusal.rule, reason=refusal.reason)


def refusal_message(command: Message, refused: Refused, clock: Clock) -> OutgoingMessage:
    environment_id = getattr(command, "environment_id", None)
    return outgoing(
        ChangeRequestRefusedV1(
            event_id=uuid.uuid4(),
            occurred_at=clock.now(),
            producer=PRODUCER,
            key=command.kafka_key().decode(),
            environment_id=environment_id,
            refused_event_id=command.event_id,
            contract_id=refused.contract_id,
            refused_message_type=command.message_type,
            rule=refused.rule,
            reason=refused.reason,
        )
    )


class ContractIntake:
    """Batch use case for contract commands from sales, CRM and support systems.

    A refused command publishes `ChangeRequestRefusedV1` for the requester and is rejected, so
    that it is also dead-lettered with the reason; a command for an unknown environment is
    rejected likewise (it may have overtaken its `ContractSignedV1` and can be replayed).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        rejections = []
        for event in events:
            try:
                outcome = await handle_contract_command(session, event, self._clock, source=SOURCE_KAFKA)
            except ContractNotFoundError as exc:
                outcome = Refused(contract_id=None, rule="B-01", reason=str(exc))
            if isinstance(outcome, Refused):
                await enqueue(
                    session,
                    t.runtime_tables.outbox,
                    [refusal_message(event, outcome, self._clock)],
                    self._clock,
                )
                rejections.append(Rejection(event.event_id, f"{outcome.rule}: {outcome.reason}"))
        return rejections


# ---------------------------------------------------------------- changes made in Procountor (I-02, B-22)


async def apply_procountor_customer_change(
    session: AsyncSession, e: CustomerChangedInProcountorV1, clock: Clock
) -> list[str]:
    """B-22, I-02: the billing address and channel flow into every open contract the payer pays.

    The company name is recorded but never changes the name on invoices (B-22).
    Returns the contracts changed; raises `ChangeRefusedError` when nothing can apply.
    """
    if e.business_id != e.payer_id:
        raise ChangeRefusedError(
            "B-22", f"payer {e.payer_id} is a business ID; the event names {e.business_id}"
        )
    today = today_in_helsinki(clock)
    c = t.contracts.c
    rows = (
        (
            await session.execute(
                select(t.contracts)
                .where(c.payer_id == e.payer_id)
                .where((c.end_date.is_(None)) | (c.end_date >= today))
                .order_by(c.contract_id)
                .with_for_update()
            )
        )
        .mappings()
        .all()
    )
    if not rows:
        raise ChangeRefusedError("B-22", f"no open contract is paid by {e.payer_id}")
    changed = []
    for row in rows:
        einvoice = _json(e.einvoice_address) if e.einvoice_address is not None else row["einvoice_address"]
        email = e.billing_email or row["billing_email"]
        if e.billing_channel is BillingChannel.EINVOICE and einvoice is None:
            raise ChangeRefusedError("B-20", "the e-invoice channel needs an e-invoice address and operator")
        if e.billing_channel is BillingChannel.EMAIL and email is None:
            raise ChangeRefusedError("B-21", "the email channel needs a billing email")
        values = {
            "billing_address": _json(e.billing_address),
            "billing_channel": e.billing_channel.value,
            "einvoice_address": einvoice,
            "billing_email": email,
        }
        if all(row[k] == v for k, v in values.items()):
            continue
        await repo.record_change(
            session,
            contract_id=row["contract_id"],
            at=clock.now(),
            change="billing_details_changed_in_procountor",
            details={
                "event": e.model_dump(mode="json"),
                "before": {k: row[k] for k in values},
                # B-22: shown in Procountor, not printed on invoices.
                "procountor_company_name": e.company_name,
            },
            requested_by={"source": "procountor", "procountor_customer_id": e.procountor_customer_id},
            source=SOURCE_PROCOUNTOR,
            event_id=e.event_id,
        )
        await _refresh_and_announce(
            session, row["contract_id"], clock, change="billing_details_changed", values=values
        )
        changed.append(str(row["contract_id"]))
    return changed


class ProcountorCustomerIntake:
    """Batch use case for customers changed in Procountor (procountor-sync, I-02)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(
        self, session: AsyncSession, events: Sequence[CustomerChangedInProcountorV1]
    ) -> list[Rejection]:
        rejections = []
        for event in events:
            try:
                async with session.begin_nested():
                    await apply_procountor_customer_change(session, event, self._clock)
            except ChangeRefusedError as exc:
                rejections.append(Rejection(event.event_id, f"{exc.rule}: {exc.reason}"))
        return rejections


# ---------------------------------------------------------------- the passing of time


async def refresh_contracts(sessions: async_sessionmaker[AsyncSession], clock: Clock) -> int:
    """Bring contracts up to today: production reached, contract ended, terms whose month came (B-26, B-27).

    Each contract that changes is announced (`ContractChangedV1`), so partners count it (P-03).
    Idempotent; safe to run from several replicas (row locks). Returns the contracts changed.
    """
    today = today_in_helsinki(clock)
    async with sessions() as session:
        ids = await repo.contracts_due_for_refresh(session, today)
    count = 0
    for contract_id in ids:
        async with sessions.begin() as session:
            row = await repo.contract_row(session, contract_id, for_update=True)
            if row is None:
                continue
            new = await _refresh(session, contract_id, clock)
            changes = [k for k in ("status", "package", "accounting_firm_id", "payer_id") if row[k] != new[k]]
            if not changes:
                continue
            name = (
                {
                    ContractStatus.ACTIVE.value: "production_started",
                    ContractStatus.TERMINATED.value: "terminated",
                }.get(new["status"], "terms_took_effect")
                if "status" in changes
                else "terms_took_effect"
            )
            await repo.record_change(
                session,
                contract_id=contract_id,
                at=clock.now(),
                change=name,
                details={"before": {k: row[k] for k in changes}, "after": {k: new[k] for k in changes}},
                effective_from=YearMonth.of(today).first_day,
                source=SOURCE_SCHEDULE,
            )
            await _announce(session, new, clock, change=name, effective_from=YearMonth.of(today).first_day)
            count += 1
    if count:
        log.info("contracts_refreshed", count=count, today=today.isoformat())
    return count


async def keep_contracts_current(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, *, every_seconds: float = 300.0
) -> None:
    """Background loop of the service: `refresh_contracts` every few minutes, failures logged."""
    while True:
        try:
            await refresh_contracts(sessions, clock)
        except Exception:
            log.exception("contract_refresh_failed")
        await asyncio.sleep(every_seconds)
