"""Contract use cases: sign a contract and apply the commands of sales, CRM and support systems
(B-01, B-04, B-17, B-20…B-29). Each command is applied in the caller's transaction and either
accepted or refused with its rule (audited, B-25). The B-28 and B-29 transfers are in `transfers`,
changes from Procountor and the passing of time in `upkeep`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    PackageChangeRequestedV1,
    ProductionStartedV1,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from billing_contracts.invoicing import ChangeRequestRefusedV1
from invoicing.calendar import YearMonth
from invoicing.contracts.changes import (
    PRODUCER,
    SOURCE_PROCOUNTOR,
    SOURCE_SCHEDULE,
    Accepted,
    ContractNotFoundError,
    Source,
    add_signed_contract,
    announce,
    audit_and_announce,
    locked,
    open_contract,
    requested_by_of,
    requester,
    schedule,
    terms_by_cut_off,
)
from invoicing.contracts.contract import check_signing, contract_id_for
from invoicing.contracts.domain import (
    ChangeRefusedError,
    accounting_firm_change,
    check_name_change,
    check_requester,
    package_change,
    status_on,
    termination,
)
from invoicing.contracts.repository import ContractRepository
from invoicing.contracts.transfers import approve_tallennus_firm_change, change_business_id
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.database import Session
from service_runtime.outbox import OutgoingMessage, outgoing

__all__ = [
    "CONTRACT_COMMANDS",
    "SOURCE_PROCOUNTOR",
    "SOURCE_SCHEDULE",
    "Accepted",
    "ContractNotFoundError",
    "Outcome",
    "Refused",
    "Source",
    "contract_id_for",
    "handle_contract_command",
    "refusal_message",
    "sign_contract",
]

log = structlog.get_logger(__name__)

#: Contract commands invoicing applies (DueDateChangeRequestedV1 belongs to receivables, B-23).
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


@dataclass(frozen=True)
class Refused:
    """A command refused by a rule; audited on the contract when there is one."""

    contract_id: str | None
    rule: str
    reason: str


Outcome = Accepted | Refused


# --- signing ---


async def sign_contract(session: Session, c: ContractSignedV1, clock: Clock) -> str:
    """Create the contract of an environment (B-01, B-17); refuse a second one for the same environment."""
    check_signing(c)
    contract = await add_signed_contract(session, c, clock)
    await announce(session, contract, clock, change="signed")
    return contract.contract_id


# --- changes ---


async def start_production(
    session: Session, c: ProductionStartedV1, clock: Clock, source: Source
) -> Accepted:
    contract = await open_contract(session, c.environment_id, clock, requested_by=None)
    end = contract.end_date
    if end is not None and c.production_date > end:
        raise ChangeRefusedError(
            "B-27", f"the contract ends on {end.isoformat()}, before {c.production_date.isoformat()}"
        )
    return await audit_and_announce(
        session,
        contract,
        c,
        clock,
        name="production_date_set",
        values={"production_date": c.production_date},
        source=source,
    )


async def change_package(
    session: Session, c: PackageChangeRequestedV1, clock: Clock, source: Source
) -> Accepted:
    contract = await open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    change = package_change(
        await terms_by_cut_off(session, contract.contract_id, c.requested_at),
        kind=c.change_kind,
        new_package=c.new_package,
        requested_at=c.requested_at,
        business_id=contract.business_id,
        end_date=contract.end_date,
    )
    return await schedule(
        session, contract, change, c, clock, name=f"{c.change_kind.value}_changed", source=source
    )


async def change_accounting_firm(
    session: Session, c: AccountingFirmChangeRequestedV1, clock: Clock, source: Source
) -> Accepted:
    contract = await open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    change = accounting_firm_change(
        await terms_by_cut_off(session, contract.contract_id, c.requested_at),
        new_firm_id=c.new_accounting_firm_id,
        new_firm_business_id=c.new_accounting_firm_business_id,
        requested_at=c.requested_at,
        end_date=contract.end_date,
    )
    return await schedule(session, contract, change, c, clock, name="accounting_firm_changed", source=source)


async def give_notice(
    session: Session, c: TerminationNoticeGivenV1, clock: Clock, source: Source
) -> Accepted:
    check_requester(requester(c.requested_by))
    contract = await locked(session, c.environment_id)
    if contract.end_date is not None:
        raise ChangeRefusedError(
            "B-27",
            f"notice was already given on {contract.notice_given_on}; the contract ends on {contract.end_date}",
        )
    return await audit_and_announce(
        session,
        contract,
        c,
        clock,
        name="termination_noticed",
        values=contract.ending_values(termination(c.notice_given_at), reason=c.reason),
        source=source,
        reason=c.reason,
    )


async def change_billing_contact(
    session: Session, c: BillingContactChangeRequestedV1, clock: Clock, source: Source
) -> Accepted:
    """B-24: a written notice with name, phone and email (the contract enforces all three)."""
    contract = await open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    return await audit_and_announce(
        session,
        contract,
        c,
        clock,
        name="billing_contact_changed",
        values={"billing_contact": c.new_contact.model_dump(mode="json")},
        source=source,
    )


async def change_company_name(
    session: Session, c: CompanyNameChangeNoticeGivenV1, clock: Clock, source: Source
) -> Accepted:
    """B-22: only a change notice with the old and the new name changes the name on invoices."""
    contract = await open_contract(session, c.environment_id, clock, requested_by=c.requested_by)
    check_name_change(
        current_name=contract.company_name, old_name=c.old_company_name, new_name=c.new_company_name
    )
    return await audit_and_announce(
        session,
        contract,
        c,
        clock,
        name="company_name_changed",
        values={"company_name": c.new_company_name},
        source=source,
    )


def refuse_advance_billing(c: AdvanceBillingRequestedV1) -> None:
    raise ChangeRefusedError(
        "B-04",
        f"billing is in arrears, by actual use; months {c.from_month}…{c.to_month} cannot be billed in advance",
    )


async def _apply(session: Session, command: Message, clock: Clock, source: Source) -> Accepted:
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
            return await start_production(session, command, clock, source)
        case PackageChangeRequestedV1():
            return await change_package(session, command, clock, source)
        case AccountingFirmChangeRequestedV1():
            return await change_accounting_firm(session, command, clock, source)
        case TerminationNoticeGivenV1():
            return await give_notice(session, command, clock, source)
        case BusinessIdChangeRequestedV1():
            return await change_business_id(session, command, clock, source)
        case TallennusFirmChangeApprovedV1():
            return await approve_tallennus_firm_change(session, command, clock, source)
        case BillingContactChangeRequestedV1():
            return await change_billing_contact(session, command, clock, source)
        case CompanyNameChangeNoticeGivenV1():
            return await change_company_name(session, command, clock, source)
        case AdvanceBillingRequestedV1():
            refuse_advance_billing(command)
    raise TypeError(f"unsupported command {type(command).__name__}")


async def handle_contract_command(
    session: Session, command: Message, clock: Clock, *, source: Source
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
        contracts = ContractRepository(session)
        contract = None if environment_id is None else await contracts.of_environment(str(environment_id))
        contract_id = None if contract is None else contract.contract_id
        if contract_id is not None:
            await contracts.record_change(
                contract_id=contract_id,
                at=clock.now(),
                change=command.message_type.removeprefix("contracts."),
                details=command.model_dump(mode="json"),
                requested_by=requested_by_of(command),
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
    """`ChangeRequestRefusedV1` for the requester of a refused command."""
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
