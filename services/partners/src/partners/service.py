"""Partners' use cases, one per input for Kafka and HTTP alike: program facts, contract state, tiers, commissions."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import pydantic_core
import structlog

from billing_contracts.base import Message, wire_json
from billing_contracts.invoicing import (
    BillingRunFinishedV1,
    ContractChangedV1,
    CreditNoteIssuedV1,
    InvoiceIssuedV1,
)
from billing_contracts.partners import (
    AccountingFirmDetailsChangedV1,
    AccountingFirmRegisteredV1,
    AuthorizationPart,
    CommissionLineKind,
    CommissionStatementIssuedV1,
    CooperationAgreementEndedV1,
    ExamKind,
    ExamResultWithdrawnV1,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    ExpertJoinedFirmV1,
    ExpertLeftFirmV1,
    PartnerTier,
    PartnerTierChangedV1,
)
from billing_contracts.registry import topic_for
from partners import tables as t
from partners.domain import (
    AgreementEvent,
    BenefitBook,
    ExpertCounts,
    ExpertFact,
    ExpertFactKind,
    ProgramRefusedError,
    Standing,
    Statement,
    StatementLine,
    UnknownFirmError,
    check_expert_fact,
    count_changes,
    expert_counts_by_firm,
    expired_parking_reason,
    in_program_during,
    is_end_customer,
    line_label,
    make_statement,
    month_of,
    standing_from,
    standing_of,
    statement_id,
    tier_change,
)
from partners.repository import (
    CommissionRepository,
    EnvironmentRepository,
    FactRepository,
    FirmRepository,
    ParkedInputRepository,
    StoredStanding,
    TierRepository,
    claim_event,
)
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.consumer import Record, Rejection, StoredRecord, record_of
from service_runtime.database import Session, Sessions
from service_runtime.metrics import PartnersMetrics
from service_runtime.outbox import OutgoingMessage, enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "partners"

#: What the partner managers' CRM and the training platform send (Kafka), or partner managers enter (HTTP).
PROGRAM_INPUTS: tuple[type[Message], ...] = (
    AccountingFirmRegisteredV1,
    CooperationAgreementEndedV1,
    AccountingFirmDetailsChangedV1,
    ExpertCertifiedV1,
    ExpertAuthorizationPassedV1,
    ExamResultWithdrawnV1,
    ExpertJoinedFirmV1,
    ExpertLeftFirmV1,
)
#: What invoicing publishes that commissions are made of (P-08).
BILLING_INPUTS: tuple[type[Message], ...] = (InvoiceIssuedV1, CreditNoteIssuedV1, BillingRunFinishedV1)

_ExpertInput = (
    ExpertCertifiedV1
    | ExpertAuthorizationPassedV1
    | ExamResultWithdrawnV1
    | ExpertJoinedFirmV1
    | ExpertLeftFirmV1
)


@dataclass(frozen=True)
class Refused:
    """An input the rules refused for good: a dead letter on Kafka, a 4xx problem over HTTP."""

    event_id: uuid.UUID
    error: ProgramRefusedError

    def rejection(self) -> Rejection:
        return Rejection(
            self.event_id,
            f"{self.error.rule}: {self.error.reason} (it was parked before and its parking expired; "
            "it is refused at once now)",
        )


# ---------------------------------------------------------------- P-02, P-04 program facts


def _expert_fact(e: _ExpertInput) -> ExpertFact:
    common: dict[str, Any] = {"expert_id": e.expert_id, "firm_id": e.firm_id, "occurred_at": e.occurred_at}
    match e:
        case ExpertCertifiedV1():
            return ExpertFact(
                kind=ExpertFactKind.PASSED,
                on=e.passed_on,
                software=e.software,
                exam=ExamKind.CERTIFICATION,
                **common,
            )
        case ExpertAuthorizationPassedV1():
            exam = (
                ExamKind.AUTHORIZATION_ONLINE
                if e.part is AuthorizationPart.ONLINE
                else ExamKind.AUTHORIZATION_IN_PERSON
            )
            return ExpertFact(
                kind=ExpertFactKind.PASSED, on=e.passed_on, software=e.software, exam=exam, **common
            )
        case ExamResultWithdrawnV1():
            return ExpertFact(
                kind=ExpertFactKind.WITHDRAWN, on=e.withdrawn_on, software=e.software, exam=e.exam, **common
            )
        case ExpertJoinedFirmV1():
            return ExpertFact(kind=ExpertFactKind.JOINED, on=e.joined_on, **common)
        case ExpertLeftFirmV1():
            return ExpertFact(kind=ExpertFactKind.LEFT, on=e.left_on, **common)
    raise TypeError(type(e).__name__)


def _unknown(firm_id: str) -> UnknownFirmError:
    return UnknownFirmError(
        "P-02",
        f"firm {firm_id} is not registered in the partner program; its accounting-firm-registered "
        "(cooperation agreement signed) must come first",
    )


#: How long an input refused for what is not known yet stays parked, to be applied if it becomes known.
DEFAULT_PARKING = dt.timedelta(days=14)
#: The consumer group of the partner-program topics (the one that parks inputs).
PROGRAM_GROUP = "partners-program"


@dataclass
class _Batch:
    """What one transaction of program inputs has learned so far, and what it will write."""

    firms: FirmRepository
    registered: set[str]
    people: defaultdict[str, list[ExpertFact]]
    #: Registrations of the batch, the latest per firm, written in one statement (`flush`).
    registrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    agreement_rows: list[dict[str, Any]] = field(default_factory=list)
    expert_rows: list[dict[str, Any]] = field(default_factory=list)
    affected: set[str] = field(default_factory=set)
    newly_registered: set[str] = field(default_factory=set)
    touched_people: set[str] = field(default_factory=set)

    async def apply(self, e: Message) -> None:
        """Check one input against what is known and queue its fact; raises `ProgramRefusedError`."""
        firm_id: str = e.firm_id  # type: ignore[attr-defined]  # every program input is about a firm
        if isinstance(e, AccountingFirmRegisteredV1):
            self.registrations[firm_id] = {
                "firm_id": firm_id,
                "business_id": e.business_id,
                "firm_name": e.firm_name,
                "registered_at": e.occurred_at,
                "updated_at": e.occurred_at,
            }
            self.registered.add(firm_id)
            self.newly_registered.add(firm_id)
            self.agreement_rows.append(_agreement_row(e, AgreementEvent.SIGNED, e.agreement_signed_on, None))
        elif firm_id not in self.registered:
            raise _unknown(firm_id)
        elif isinstance(e, CooperationAgreementEndedV1):
            self.agreement_rows.append(_agreement_row(e, AgreementEvent.ENDED, e.ended_on, e.reason))
        elif isinstance(e, AccountingFirmDetailsChangedV1):
            await self.flush()  # the firm's row must exist before its details change
            await self.firms.change_details(
                firm_id,
                {
                    "firm_name": e.firm_name,
                    "business_id": e.business_id,
                    "city": e.city,
                    "website": e.website,
                    "presentation": e.presentation,
                    "extended_presentation": e.extended_presentation,
                    "software": e.software,
                },
                e.occurred_at,
            )
            return  # the directory's data; no tier depends on it
        else:
            fact = _expert_fact(e)  # type: ignore[arg-type]
            person = self.people[fact.expert_id]
            check_expert_fact(fact, person)
            person.append(fact)
            self.touched_people.add(fact.expert_id)
            self.affected.update(f.firm_id for f in person)  # the firm a person left, too
            self.expert_rows.append(_expert_row(e, fact))
        self.affected.add(firm_id)

    async def flush(self) -> None:
        """Write the registrations queued so far."""
        if self.registrations:
            await self.firms.register_many(list(self.registrations.values()))
            self.registrations.clear()


async def record_program_facts(
    session: Session,
    events: Sequence[Message],
    clock: Clock,
    *,
    parking: dt.timedelta | None = DEFAULT_PARKING,
) -> list[Refused]:
    """Record firm registrations, agreements, directory data and people's exam results, then recompute tiers.

    Each input is checked against what is known at that point (the batch's earlier inputs
    included): an input about an unregistered firm (P-02), and an exam or leave that contradicts
    the person's known facts (P-04), is refused with the reason; the rest are stored as facts and
    the tiers of every firm they touch are recomputed from all stored facts.

    Every partner-program fact has its own topic, so a firm's registration and a person's move can
    arrive after inputs that need them. Every refusal of these rules is of that kind — what the
    input needs is not known *yet* — so on Kafka a refused input is *parked* for `parking`, not
    refused: when its firm registers or a new fact about its person arrives within that time, it is
    applied then, as if it had come in order; when nothing arrives, `expire_parked_inputs`
    dead-letters it with its reason. Returns the refusals that are final: over HTTP
    (`parking=None`) every refusal, at once; on Kafka only an input parked before whose parking
    expired (its dead letter replayed, still refused). Inputs that can never become valid (an
    invalid business ID, a schema violation) never reach this: the consumer dead-letters them.
    """
    firms = FirmRepository(session)
    facts = FactRepository(session)
    batch = _Batch(
        firms=firms,
        registered=await firms.registered_among(e.firm_id for e in events if hasattr(e, "firm_id")),
        people=defaultdict(list, await facts.people(e.expert_id for e in events if hasattr(e, "expert_id"))),
    )
    refused: list[Refused] = []
    for e in events:
        try:
            await batch.apply(e)
        except ProgramRefusedError as exc:
            refused.append(Refused(e.event_id, exc))
    if parking is not None:
        if refused:
            by_id = {e.event_id: e for e in events}
            parked = await ParkedInputRepository(session).park(
                [_parked_row(by_id[r.event_id], r.error, clock) for r in refused]
            )
            refused = [r for r in refused if r.event_id not in parked]
        await _apply_parked(session, batch, clock, parking)
    await batch.flush()
    await facts.add_agreement_facts(batch.agreement_rows)
    await facts.add_expert_facts(batch.expert_rows)
    await recompute_tiers(session, batch.affected, clock)
    return refused


async def _apply_parked(session: Session, batch: _Batch, clock: Clock, parking: dt.timedelta) -> None:
    """Apply the parked inputs this batch made valid: of firms it registered, of people it told about.

    Tried again while any applies, since one parked input (an online part, a move) can make another
    valid (the in-person part, an exam at the new firm), whatever order they were parked in.
    """
    repo = ParkedInputRepository(session)
    since = clock.now() - parking
    asked_firms: set[str] = set()
    asked_people: set[str] = set()
    pending: dict[uuid.UUID, Message] = {}
    applied: list[uuid.UUID] = []
    while True:
        firms = batch.newly_registered - asked_firms
        people = batch.touched_people - asked_people
        if not firms and not people:
            break
        asked_firms |= firms
        asked_people |= people
        for event_id, message in await repo.waiting(firms=firms, experts=people, since=since):
            if event_id not in applied:
                pending.setdefault(event_id, message)
        missing = {expert for m in pending.values() if (expert := getattr(m, "expert_id", None))}
        for expert, known in (await FactRepository(session).people(missing - set(batch.people))).items():
            batch.people[expert] = known
        progress = True
        while progress:
            progress = False
            for event_id, message in list(pending.items()):
                try:
                    await batch.apply(message)
                except ProgramRefusedError:
                    continue
                del pending[event_id]
                applied.append(event_id)
                progress = True
    await repo.mark_applied(applied, clock.now())
    if applied:
        log.info("parked_inputs_applied", count=len(applied))


def _parked_row(e: Message, error: ProgramRefusedError, clock: Clock) -> dict[str, Any]:
    record = record_of(e.event_id)  # the Kafka record it came in, named by its dead letter if it expires
    return {
        "event_id": e.event_id,
        "firm_id": e.firm_id,  # type: ignore[attr-defined]
        "expert_id": getattr(e, "expert_id", None),
        "topic": record.topic if record is not None else topic_for(type(e)),
        "message": record.value if record is not None and record.value is not None else wire_json(e),
        "rule": error.rule,
        "reason": error.reason,
        "parked_at": clock.now(),
        "consumer_group": PROGRAM_GROUP if record is not None else None,
        "partition": record.partition if record is not None else None,
        "offset": record.offset if record is not None else None,
        "key": record.key if record is not None else None,
    }


class ParkedInputLetters(Protocol):
    """Where expired parked inputs go: the program intake's consumer (`IdempotentConsumer.dead_letter_later`)."""

    async def dead_letter_later(
        self, session: Session, letters: Sequence[tuple[Record, uuid.UUID, str]]
    ) -> None: ...


async def expire_parked_inputs(
    sessions: Sessions,
    clock: Clock,
    letters: ParkedInputLetters,
    *,
    parking: dt.timedelta = DEFAULT_PARKING,
    batch_size: int = 500,
) -> int:
    """Dead-letter the parked inputs whose parking expired with nothing they need arrived; returns how many.

    Each is dead-lettered (`rejected`, with its rule and reason and when it was parked) and marked
    expired in one transaction, so a crash leaves neither a letter without its mark nor a mark
    without its letter; a second sweep finds nothing more (idempotent). Rows a consumer is
    applying at the same moment are locked by it and skipped here. Inputs parked before revision
    0005 were dead-lettered when parked and have no record: they are only marked.
    """
    expired = 0
    while True:
        async with sessions.begin() as session:
            repo = ParkedInputRepository(session)
            now = clock.now()
            due = await repo.expired(parked_before=now - parking, limit=batch_size)
            if not due:
                return expired
            await letters.dead_letter_later(
                session,
                [
                    (
                        StoredRecord(p.topic, p.partition, p.offset, p.key, p.message),
                        p.event_id,
                        expired_parking_reason(p.rule, p.reason, p.parked_at, parking),
                    )
                    for p in due
                    if p.partition is not None and p.offset is not None
                ],
            )
            await repo.mark_expired([p.event_id for p in due], now)
            expired += len(due)
            log.info("parked_inputs_expired", count=len(due))


async def keep_parked_inputs_swept(
    sessions: Sessions,
    clock: Clock,
    letters: ParkedInputLetters,
    *,
    parking: dt.timedelta,
    every_seconds: float,
) -> None:
    """Background loop of the service: `expire_parked_inputs`, failures logged and retried next time."""
    while True:
        try:
            await expire_parked_inputs(sessions, clock, letters, parking=parking)
        except Exception:
            log.exception("parked_input_sweep_failed")
        await asyncio.sleep(every_seconds)


async def measure_parked_inputs(sessions: Sessions, clock: Clock, metrics: PartnersMetrics) -> None:
    """The gauges of parked inputs, from the table (every replica reports the same)."""
    async with sessions() as session:
        count, oldest = await ParkedInputRepository(session).waiting_summary()
    metrics.parked.set(count)
    metrics.parked_oldest_age.set(0 if oldest is None else max(0.0, (clock.now() - oldest).total_seconds()))


def _agreement_row(e: Message, kind: AgreementEvent, on: dt.date, reason: str | None) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "firm_id": e.firm_id,  # type: ignore[attr-defined]
        "kind": kind.value,
        "on_date": on,
        "occurred_at": e.occurred_at,
        "reason": reason,
        "recorded_by": e.producer,
    }


def _expert_row(e: Message, fact: ExpertFact) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "expert_id": fact.expert_id,
        "firm_id": fact.firm_id,
        "kind": fact.kind.value,
        "on_date": fact.on,
        "occurred_at": fact.occurred_at,
        "software": fact.software.value if fact.software else None,
        "exam": fact.exam.value if fact.exam else None,
        "reason": getattr(e, "reason", None),
        "recorded_by": e.producer,
    }


class InputOutcome:
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"


async def apply_program_input(sessions: Sessions, message: Message, clock: Clock, *, topic: str) -> str:
    """The HTTP path into the same use case: claimed by event id like a Kafka message, refusals raised.

    A refused input leaves nothing behind (its claim is rolled back), so it can be corrected and
    sent again with the same request id.
    """
    async with sessions.begin() as session:
        if not await claim_event(session, message.event_id, topic, clock.now()):
            return InputOutcome.ALREADY_APPLIED
        refused = await record_program_facts(session, [message], clock, parking=None)
        if refused:
            raise refused[0].error
        return InputOutcome.APPLIED


# ---------------------------------------------------------------- P-03 end customers


async def follow_contracts(session: Session, events: Sequence[ContractChangedV1], clock: Clock) -> None:
    """Keep the newest contract state per environment (late events change nothing), then recompute tiers.

    The firms recomputed are the environment's accounting firm before and after the event, so an
    accounting-firm change (B-29, B-26) moves the end customer from one count to the other.
    """
    newest: dict[str, ContractChangedV1] = {}
    for e in events:
        if e.environment_id not in newest or e.occurred_at >= newest[e.environment_id].occurred_at:
            newest[e.environment_id] = e
    if not newest:
        return
    environments = EnvironmentRepository(session)
    old = await environments.lock_states(newest)
    # The firms the environments count for before and after, locked before anything is read, so
    # that two transactions changing one firm's environments (two consumers of this topic, a B-28
    # successor and its predecessor on two partitions) read each other's committed changes.
    involved = {firm for firm, _ in old if firm} | {
        e.accounting_firm_id for e in newest.values() if e.accounting_firm_id
    }
    await FirmRepository(session).lock(involved)
    # B-28: an environment's count depends on the contract succeeding it, so the environments
    # whose successor is one of these contracts (before or after) are read with them.
    contracts = {contract for _, contract in old if contract} | {e.contract_id for e in newest.values()}
    before = await environments.counted(newest, successors_of=contracts)
    await environments.keep_latest(
        [
            {
                "environment_id": e.environment_id,
                "contract_id": e.contract_id,
                "accounting_firm_id": e.accounting_firm_id,
                "status": e.status.value,
                "package": e.package.value,
                "own_use": e.own_use,
                "reseller_partner_id": e.reseller_partner_id,
                "successor_contract_id": e.successor_contract_id,
                "is_end_customer": is_end_customer(e.status, e.accounting_firm_id, e.own_use, e.package),
                "changed_at": e.occurred_at,
            }
            for e in newest.values()
        ]
    )
    after = await environments.counted(newest.keys() | before.keys())
    # P-03: each firm's count changes by what these environments count for it now minus before;
    # only firms whose count changed are recomputed (a notice, a package change, a late event
    # change none), and they are not counted again.
    changed = count_changes(before, after)
    await recompute_tiers(session, changed, clock, end_customer_changes=changed, locked=True)


# ---------------------------------------------------------------- P-05 tiers


async def recompute_tiers(
    session: Session,
    firm_ids: Iterable[str],
    clock: Clock,
    *,
    end_customer_changes: Mapping[str, int] | None = None,
    locked: bool = False,
) -> int:
    """P-05: each registered firm's standing today from every stored fact; a changed tier is announced.

    The firms are locked for the transaction (advisory, sorted), and everything is read after the
    lock, so that two transactions touching one firm (a contract event and an exam result) cannot
    both compute from a state missing the other's fact. With `end_customer_changes` (contract state
    changed, nothing else: how each firm's count changed), a firm already computed today keeps the
    agreement and expert counts computed from its facts today, and its stored end-customer count
    plus the change is its count: the stored count was counted or kept so today, under the same
    lock, so it includes every committed environment (one not yet committed brings its own change).
    Every other firm is computed from all its facts and counted. `locked`: the caller holds the
    firms' locks already. Returns how many tiers changed.
    """
    ids = set(firm_ids)
    if not ids:
        return 0
    firms = FirmRepository(session)
    if not locked:
        await firms.lock(ids)
    current = await firms.standings_of(ids)
    if not current:
        return 0
    today = today_in_helsinki(clock)
    now = clock.now()
    full = {f for f, row in current.items() if end_customer_changes is None or row.standing_on != today}
    facts = FactRepository(session)
    agreements = await facts.agreements_of(full)
    experts = expert_counts_by_firm(await facts.people_of_firms(full), today) if full else {}
    end_customers = await EnvironmentRepository(session).end_customer_counts(full)
    for firm_id, row in current.items():
        if firm_id not in full:
            assert end_customer_changes is not None
            end_customers[firm_id] = row.end_customers + end_customer_changes.get(firm_id, 0)
    standings: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    messages: list[OutgoingMessage] = []
    for firm_id, row in sorted(current.items()):
        if firm_id in full:
            standing = standing_of(
                agreement=agreements.get(firm_id, []),
                experts=experts.get(firm_id, ExpertCounts()),
                end_customers=end_customers.get(firm_id, 0),
                on=today,
            )
        else:
            known = ExpertCounts(row.certified_experts, row.authorized_experts)
            standing = standing_from(row.in_program, known, end_customers.get(firm_id, 0))
        change = tier_change(row.tier, row.in_program, standing, today)
        if change is None and _unchanged(row, standing, today):
            continue  # nothing to write: the stored standing is today's
        standings.append(
            {
                "firm_id": firm_id,
                "in_program": standing.in_program,
                "tier": standing.tier.value if standing.tier else None,
                "end_customers": standing.counts.end_customers,
                "certified": standing.counts.certified,
                "authorized": standing.counts.authorized,
                "reason": change.reason if change else None,
                "standing_on": today,
                "updated_at": now,
            }
        )
        if change is None:
            continue
        event = PartnerTierChangedV1(
            event_id=uuid.uuid4(),
            occurred_at=now,
            producer=PRODUCER,
            firm_id=firm_id,
            old_tier=change.old_tier,
            new_tier=change.new_tier,
            reason=change.reason,
            end_customers=change.counts.end_customers,
            certified_experts=change.counts.certified,
            authorized_experts=change.counts.authorized,
            effective_month=change.effective_month,
            in_program=change.in_program,
        )
        messages.append(outgoing(event))
        changes.append(
            {
                "event_id": event.event_id,
                "firm_id": firm_id,
                "changed_at": now,
                "effective_month": change.effective_month,
                "old_tier": change.old_tier.value if change.old_tier else None,
                "new_tier": change.new_tier.value,
                "in_program": change.in_program,
                "reason": change.reason,
                "end_customers": change.counts.end_customers,
                "certified_experts": change.counts.certified,
                "authorized_experts": change.counts.authorized,
            }
        )
        log.info(
            "partner_tier_changed",
            firm_id=firm_id,
            old=event.old_tier,
            new=event.new_tier,
            month=change.effective_month,
        )
    await firms.save_standings(standings)
    await TierRepository(session).add(changes)
    await enqueue(session, t.runtime_tables.outbox, messages, clock)
    return len(changes)


def _unchanged(row: StoredStanding, standing: Standing, today: dt.date) -> bool:
    return (
        row.standing_on == today
        and row.in_program == standing.in_program
        and row.tier == standing.tier
        and row.end_customers == standing.counts.end_customers
        and row.certified_experts == standing.counts.certified
        and row.authorized_experts == standing.counts.authorized
    )


async def refresh_standings(sessions: Sessions, clock: Clock, *, batch_size: int = 500) -> int:
    """Recompute every firm not yet computed for today: dated facts (an agreement ending, a person
    joining on a later day) take effect on their day without a new input. Returns the tier changes."""
    today = today_in_helsinki(clock)
    changed = 0
    while True:
        async with sessions.begin() as session:
            due = await FirmRepository(session).due_for_refresh(today, batch_size)
            if not due:
                return changed
            changed += await recompute_tiers(session, due, clock)


async def keep_standings_current(sessions: Sessions, clock: Clock, *, every_seconds: float) -> None:
    """Background loop of the service: `refresh_standings`, failures logged and retried next time."""
    while True:
        try:
            await refresh_standings(sessions, clock)
        except Exception:
            log.exception("standing_refresh_failed")
        await asyncio.sleep(every_seconds)


# ---------------------------------------------------------------- P-08 commissions


async def record_billing_documents(
    session: Session, events: Sequence[Message], clock: Clock, benefits: BenefitBook
) -> None:
    """Keep each invoice's and credit note's software charges per reseller, and each run's totals;
    then make the statements of every month that is complete."""
    documents: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for e in events:
        if isinstance(e, InvoiceIssuedV1):
            documents.append({"document_id": e.invoice_id, "kind": "invoice", "month": e.billing_period})
            lines += [
                {
                    "document_id": e.invoice_id,
                    "partner_id": partner,
                    "kind": CommissionLineKind.INVOICE.value,
                    "month": e.billing_period,
                    "number": e.invoice_number,
                    "document_date": e.invoice_date,
                    "payer_business_id": e.payer_business_id,
                    "credited_invoice_number": None,
                    "billing_period": e.billing_period,
                    "software_net": net,
                }
                for partner, net in sorted(e.software_net_by_reseller.items())
            ]
        elif isinstance(e, CreditNoteIssuedV1):
            month = month_of(e.credit_date)
            documents.append({"document_id": e.credit_note_id, "kind": "credit_note", "month": month})
            # P-08: a credit note reduces the statement of the month it was issued in, as its own line.
            lines += [
                {
                    "document_id": e.credit_note_id,
                    "partner_id": partner,
                    "kind": CommissionLineKind.CREDIT_NOTE.value,
                    "month": month,
                    "number": e.credit_note_number,
                    "document_date": e.credit_date,
                    "payer_business_id": e.payer_business_id,
                    "credited_invoice_number": e.credited_invoice_number,
                    "billing_period": None,
                    "software_net": -net,
                }
                for partner, net in sorted(e.software_net_by_reseller.items())
            ]
        elif isinstance(e, BillingRunFinishedV1):
            runs.append(
                {
                    "month": e.billing_period,
                    "run_finished": True,
                    "invoices_issued": e.invoices_issued,
                    "credit_notes_issued": e.credit_notes_issued,
                    "finished_at": e.occurred_at,
                }
            )
    repo = CommissionRepository(session)
    await repo.add_documents(documents)
    await repo.add_lines(lines)
    if runs:
        latest: dict[str, dict[str, Any]] = {}
        for r in runs:  # one row per month and statement: the highest totals of the batch
            seen = latest.get(r["month"])
            latest[r["month"]] = (
                r
                if seen is None
                else {
                    **r,
                    "invoices_issued": max(r["invoices_issued"], seen["invoices_issued"]),
                    "credit_notes_issued": max(r["credit_notes_issued"], seen["credit_notes_issued"]),
                    "finished_at": max(r["finished_at"], seen["finished_at"]),
                }
            )
        await repo.record_runs(list(latest.values()))
    await issue_due_statements(session, clock, benefits)


async def issue_due_statements(session: Session, clock: Clock, benefits: BenefitBook) -> list[str]:
    """Make the statements of each month whose run finished and whose documents have all arrived.

    Oldest first; a month still waiting for some of its documents holds back no other month (its
    lines stay for its own statements). Returns the months made.
    """
    repo = CommissionRepository(session)
    await repo.lock()
    made = []
    for month, invoices, got_invoices, credit_notes, got_credit_notes in await repo.months_waiting():
        if got_invoices < invoices or got_credit_notes < credit_notes:
            log.info(
                "commission_month_waiting",
                month=month,
                invoices=f"{got_invoices}/{invoices}",
                credit_notes=f"{got_credit_notes}/{credit_notes}",
            )
            continue
        await issue_statements(session, month, clock, benefits, by="billing run")
        made.append(month)
    return made


async def issue_statements(
    session: Session, month: str, clock: Clock, benefits: BenefitBook, *, by: str
) -> list[Statement]:
    """P-08: one statement per reseller partner in the program during `month`, once; published.

    The month's invoices and credit notes go on it, and late ones of earlier months already made
    (an invoice of a rerun after its month's statements: paid on the next, labelled with its
    billing period). The lines are marked in the database in one statement and never change
    afterwards (a trigger refuses it).
    """
    repo = CommissionRepository(session)
    run = await repo.run_of(month)
    if run is not None and run.statements_issued_at is not None:
        return []
    partners = await repo.pending_partners(month)
    agreements = await FactRepository(session).agreements_of(partners)
    eligible = [p for p in partners if in_program_during(agreements.get(p, []), month)]
    if len(eligible) < len(partners):
        log.warning(
            "commission_lines_of_non_partners", month=month, partners=sorted(set(partners) - set(eligible))
        )
    tiers = await TierRepository(session).in_effect(eligible, month)
    assigned = await repo.assign(month, {p: statement_id(month, p) for p in eligible})
    by_partner: dict[str, list[StatementLine]] = defaultdict(list)
    for partner, line in assigned:
        by_partner[partner].append(line)
    now = clock.now()
    today = today_in_helsinki(clock)
    rules = benefits.for_month(month)
    statements: list[Statement] = []
    rows: list[dict[str, Any]] = []
    messages: list[OutgoingMessage] = []
    for partner in sorted(by_partner):
        lines = sorted(by_partner[partner], key=_line_order)
        tier = tiers[partner].tier if partner in tiers else PartnerTier.PARTNER
        statement = make_statement(
            partner, month, lines, rate_percent=rules.tiers[tier].resale_commission_percent, issued_on=today
        )
        event_id, message = statement_message(statement, now, validate=not statements)
        statements.append(statement)
        messages.append(message)
        rows.append(
            {
                "statement_id": statement.statement_id,
                "partner_id": partner,
                "month": month,
                "lines": len(lines),
                "software_net_total": statement.software_net_total,
                "rate_percent": statement.rate_percent,
                "commission_amount": statement.commission,
                "issued_on": today,
                "issued_at": now,
                "event_id": event_id,
            }
        )
    await repo.add_statements(rows)
    await enqueue(session, t.runtime_tables.outbox, messages, clock)
    if run is None:
        await repo.record_runs(
            [
                {
                    "month": month,
                    "run_finished": False,
                    "invoices_issued": 0,
                    "credit_notes_issued": 0,
                    "finished_at": now,
                }
            ]
        )
    await repo.mark_month_issued(month, statements=len(statements), at=now, by=by)
    log.info(
        "commission_statements_issued", month=month, statements=len(statements), lines=len(assigned), by=by
    )
    return statements


def _line_order(line: StatementLine) -> tuple[int, dt.date, str]:
    return (line.kind is CommissionLineKind.CREDIT_NOTE, line.date, line.number)


_CENT = Decimal("0.01")


def _line_wire(ln: StatementLine) -> dict[str, str | None]:
    # The contract's wire form of `CommissionInvoice` (Money as a two-decimal string, dates ISO).
    return {
        "invoice_id": ln.document_id,
        "invoice_number": ln.number,
        "payer_business_id": ln.payer_business_id,
        "invoice_date": ln.date.isoformat(),
        "software_net": format(ln.software_net.quantize(_CENT), "f"),
        "kind": ln.kind.value,
        "credited_invoice_number": ln.credited_invoice_number,
        "billing_period": ln.billing_period,
        "label": line_label(
            ln.kind,
            ln.number,
            credited_invoice_number=ln.credited_invoice_number,
            billing_period=ln.billing_period,
        ),
    }


def statement_message(
    statement: Statement, now: dt.datetime, *, validate: bool
) -> tuple[uuid.UUID, OutgoingMessage]:
    """The statement as `CommissionStatementIssuedV1` for the outbox.

    A month has thousands of statements and a hundred thousand lines, and building a pydantic
    model per line was most of the month's time: the lines are serialised straight into the
    contract's wire form, inside an envelope the contract serialises. The first statement of each
    month is read back through the contract (`validate`), and a unit test holds the two forms equal.
    """
    head = CommissionStatementIssuedV1(
        event_id=uuid.uuid4(),
        occurred_at=now,
        producer=PRODUCER,
        statement_id=statement.statement_id,
        partner_id=statement.partner_id,
        month=statement.month,
        invoices=[],
        software_net_total=statement.software_net_total,
        commission_rate_percent=statement.rate_percent,
        commission_amount=statement.commission,
        issued_on=statement.issued_on,
    )
    envelope = outgoing(head)
    lines = pydantic_core.to_json([_line_wire(ln) for ln in statement.lines])
    value = envelope.value.replace(b'"invoices":[]', b'"invoices":' + lines, 1)
    if validate:
        CommissionStatementIssuedV1.model_validate_json(value)
    return head.event_id, OutgoingMessage(
        topic=envelope.topic, key=envelope.key, value=value, headers=envelope.headers
    )


async def issue_month_now(
    sessions: Sessions, month: str, clock: Clock, benefits: BenefitBook, *, by: str
) -> list[Statement]:
    """Operator: make `month`'s statements with what has arrived, without waiting for the run's totals.

    For a month whose run-finished event or some of whose invoices will never come. What arrives
    later is paid on the next statement made. Refused if the month is already made.
    """
    async with sessions.begin() as session:
        repo = CommissionRepository(session)
        await repo.lock()
        run = await repo.run_of(month)
        if run is not None and run.statements_issued_at is not None:
            raise ProgramRefusedError(
                "P-08",
                f"the statements of {month} were made on {run.statements_issued_at:%Y-%m-%d}; a published statement is never changed",
            )
        return await issue_statements(session, month, clock, benefits, by=by)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class FirmOverview:
    """A firm as the API shows it: registration, the tier last announced, and its standing today."""

    firm_id: str
    firm: Any  # FirmRow | None
    standing: Any  # Standing
    today: dt.date


async def firm_overview(session: Session, firm_id: str, clock: Clock) -> FirmOverview:
    """The firm's standing computed now from the stored facts (read only); unregistered firms too (P-03 counts)."""
    today = today_in_helsinki(clock)
    row = await FirmRepository(session).get(firm_id)
    facts = FactRepository(session)
    agreements = await facts.agreements_of([firm_id])
    experts = expert_counts_by_firm(await facts.people_of_firms([firm_id]), today)
    counts = await EnvironmentRepository(session).end_customer_counts([firm_id])
    standing = standing_of(
        agreement=agreements.get(firm_id, []),
        experts=experts.get(firm_id, ExpertCounts()),
        end_customers=counts.get(firm_id, 0),
        on=today,
    )
    return FirmOverview(firm_id=firm_id, firm=row, standing=standing, today=today)
