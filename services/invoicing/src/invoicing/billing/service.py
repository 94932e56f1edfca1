"""The monthly billing run (B-03…B-05, B-14…B-18, P-07, P-08): each payer's period decided exactly once.

The run in its parts: `plan` reads what the run knows up front, `domain.settle_month` decides each
payer, `wire` writes the documents, `repository.record_decisions` turns the decisions into rows.
This module orders them: batches, transactions, locks, workers, retries and the run's record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from billing_contracts.invoicing import BillingRunFinishedV1, InvoiceIssuedV1
from billing_contracts.registry import topic_for
from invoicing import tables as t
from invoicing.billing.domain import (
    Adjustment,
    ItemsOf,
    PayerResult,
    PayerWork,
    Pricing,
    Settlement,
    SettlementKind,
    settle_month,
)
from invoicing.billing.plan import failure_reason, plan_month, production_month_items
from invoicing.billing.repository import SqlAlchemyBillingRepository
from invoicing.billing.run import (
    AdvanceBillingError,
    NotABillingDayError,
    RunPeriod,
    RunTally,
    billing_period,
    run_period,
)
from invoicing.billing.specification import ItemSource
from invoicing.billing.wire import (
    PRODUCER,
    IssuedInvoice,
    check_against_contract,
    held_message,
    invoice_fields,
    invoice_json,
    wire_line,
)
from invoicing.calendar import YearMonth
from invoicing.contracts.domain import ContractTerms
from invoicing.prices.domain import PriceBook
from invoicing.prices.loader import shipped_vat_rates
from invoicing.prices.vat import VatRateTable
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.database import DatabaseError, Session, Sessions
from service_runtime.outbox import OutgoingMessage, enqueue, outgoing

__all__ = [
    "AdvanceBillingError",
    "MonthNotClosedError",
    "NotABillingDayError",
    "PlannedInvoice",
    "RunReport",
    "failure_reason",
    "preview_billing",
    "run_billing",
    "wire_line",
]

log = structlog.get_logger(__name__)

DEFAULT_BATCH_SIZE = 1000  # payers per transaction: each takes one advisory lock per payer
DEFAULT_WORKERS = 2


class MonthNotClosedError(Exception):
    """The billed month is not closed by metering yet; an open month is never billed."""


@dataclass
class RunReport:
    """What one call of the run did, and the period's totals after it."""

    run_id: str
    run_date: dt.date
    billing_month: str
    attempt: int = 0
    payers: int = 0  # payers this call considered (not already decided)
    tally: RunTally = field(default_factory=RunTally)  # what this call decided
    already_billed: int = 0  # payers decided by an earlier or concurrent run
    failures: list[dict[str, str]] = field(default_factory=list)
    status: str = "running"
    totals: dict[str, int] = field(default_factory=dict)
    plan_seconds: float = 0.0  # reading the month: contracts, held lines, corrections

    @property
    def invoices_issued(self) -> int:
        return self.tally.issued

    @property
    def held(self) -> int:
        return self.tally.held

    @property
    def zero(self) -> int:
        return self.tally.zero

    @property
    def nothing_to_bill(self) -> int:
        return self.tally.nothing

    def as_view(self) -> dict[str, object]:
        """The report as the API shows it (the tally's counts by their names there)."""
        return {
            "run_id": self.run_id,
            "run_date": self.run_date,
            "billing_month": self.billing_month,
            "attempt": self.attempt,
            "payers": self.payers,
            "invoices_issued": self.invoices_issued,
            "held": self.held,
            "zero": self.zero,
            "nothing_to_bill": self.nothing_to_bill,
            "already_billed": self.already_billed,
            "failures": self.failures,
            "status": self.status,
            "totals": self.totals,
            "plan_seconds": self.plan_seconds,
        }


@dataclass(frozen=True, slots=True)
class PlannedInvoice:
    """A dry run's view of one payer: what the run would do (no number is taken)."""

    payer_id: str
    settlement: Settlement
    payer_terms: ContractTerms | None
    is_final: bool


@dataclass
class _Context:
    """One call of the run: its period (computed once), how it prices, its clock and item source."""

    period: RunPeriod
    pricing: Pricing
    clock: Clock
    items: ItemSource | None = None  # metering's item lists, for production months (B-01)


# --- one batch ---


async def _compute_batch(
    session: Session,
    ctx: _Context,
    batch: Sequence[PayerWork],
    *,
    lock: bool,
    production_items: ItemsOf | None = None,
    item_errors: Mapping[str, str] | None = None,
) -> tuple[list[PayerResult], dict[str, str]]:
    """Read what the batch needs (locking it for the run) and settle each payer; failures by payer."""
    repo = SqlAlchemyBillingRepository(session)
    month = ctx.period.month
    payers = [w.payer_id for w in batch]
    envs = sorted({x.environment_id for w in batch for x in w.terms})
    usage, folded_keys = await repo.usage_of(month, envs, lock=lock)
    folded: dict[str, list[int]] = defaultdict(list)
    for env, number in folded_keys:
        folded[env].append(number)
    held = await repo.held_of(payers, lock=lock)
    correction_keys = [(c.terms.environment_id, c.month) for w in batch for c in w.corrections]
    adjustments: dict[tuple[str, YearMonth], list[Adjustment]] = defaultdict(list)
    for adjustment in await repo.pending_adjustments_of(correction_keys, lock=lock):
        adjustments[(adjustment.environment_id, adjustment.month)].append(adjustment)
    billed = await repo.billed_environment_months(correction_keys)
    results: list[PayerResult] = []
    failures: dict[str, str] = {}
    for work in batch:
        try:
            results.append(
                settle_month(
                    work,
                    month,
                    ctx.pricing,
                    usage=usage,
                    folded=folded,
                    held=held.get(work.payer_id, []),
                    adjustments=adjustments,
                    billed=billed,
                    production_items=production_items,
                    item_errors=item_errors,
                )
            )
        except Exception as exc:  # one payer's bad data must not stop the others
            log.warning("payer_billing_failed", payer_id=work.payer_id, month=str(month), error=str(exc))
            failures[work.payer_id] = failure_reason(exc)
    return results, failures


_ISSUED_TOPIC = topic_for(InvoiceIssuedV1)


async def _persist_batch(
    session: Session, ctx: _Context, results: Sequence[PayerResult], failures: Mapping[str, str]
) -> RunTally:
    """Number and write the batch's invoices, record every decision, and announce them (outbox)."""
    repo = SqlAlchemyBillingRepository(session)
    now = ctx.clock.now()
    term_days = ctx.pricing.price_list(ctx.period.month).payment_term_days
    to_issue = [r for r in results if r.settlement.kind is SettlementKind.ISSUE]
    numbers = await repo.next_invoice_numbers(len(to_issue))
    issued: list[IssuedInvoice] = []
    messages: list[OutgoingMessage] = []
    for i, (result, number) in enumerate(zip(to_issue, numbers, strict=True)):
        invoice_id = f"INV-{number}"
        fields = invoice_fields(
            result, ctx.period, payment_term_days=term_days, number=number, invoice_id=invoice_id, now=now
        )
        document = invoice_json(fields)
        if i == 0:
            check_against_contract(document)  # a wrong document fails the batch, never goes out
        issued.append(IssuedInvoice(result.payer_id, invoice_id, number, fields, document))
        messages.append(
            OutgoingMessage(
                topic=_ISSUED_TOPIC,
                key=result.payer_id.encode(),  # InvoiceIssuedV1 is keyed by payer_id
                value=document,
                headers={"message_type": InvoiceIssuedV1.message_type, "event_id": str(fields["event_id"])},
            )
        )
    tally = RunTally()
    for result in results:
        if result.settlement.kind is SettlementKind.HOLD and result.settlement.lines:
            messages.append(outgoing(held_message(result, ctx.period, now)))
        tally.add(result.settlement.kind)
    await repo.record_decisions(ctx.period, results, issued, failures, now)
    await enqueue(session, t.runtime_tables.outbox, messages, ctx.clock)
    return tally


async def _bill_batch(
    sessions: Sessions, ctx: _Context, batch: Sequence[PayerWork]
) -> tuple[RunTally, dict[str, str], int]:
    """Bill a batch of payers in one transaction; returns the tally, failures and how many were already decided."""
    production_items, item_errors = await production_month_items(ctx.period.month, ctx.items, batch)
    async with sessions.begin() as session:
        repo = SqlAlchemyBillingRepository(session)
        payers = [w.payer_id for w in batch]
        await repo.lock_payers(ctx.period.month, payers)
        decided = await repo.decided_among(ctx.period.month, payers)
        todo = [w for w in batch if w.payer_id not in decided]
        results, failures = await _compute_batch(
            session, ctx, todo, lock=True, production_items=production_items, item_errors=item_errors
        )
        tally = await _persist_batch(session, ctx, results, failures)
    return tally, failures, len(decided)


async def _bill_with_fallback(
    sessions: Sessions, ctx: _Context, batch: Sequence[PayerWork]
) -> tuple[RunTally, dict[str, str], int]:
    """A batch in one transaction; if the transaction fails, each payer alone, so one cannot stop the rest."""
    try:
        return await _bill_batch(sessions, ctx, batch)
    except (DatabaseError, ValueError, LookupError) as exc:
        if len(batch) == 1:
            reason = failure_reason(exc)
            log.warning(
                "payer_billing_failed", payer_id=batch[0].payer_id, month=str(ctx.period.month), error=reason
            )
            async with sessions.begin() as session:
                await SqlAlchemyBillingRepository(session).record_failures(
                    ctx.period.month, {batch[0].payer_id: reason}, ctx.clock.now()
                )
            return RunTally(), {batch[0].payer_id: reason}, 0
        log.warning("billing_batch_failed_retrying_one_by_one", size=len(batch), error=type(exc).__name__)
    total = RunTally()
    failures: dict[str, str] = {}
    raced = 0
    for work in batch:
        tally, failed, r = await _bill_with_fallback(sessions, ctx, [work])
        total += tally
        failures |= failed
        raced += r
    return total, failures, raced


# --- the run ---


async def run_billing(
    sessions: Sessions,
    clock: Clock,
    price_book: PriceBook,
    run_date: dt.date,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    vat_rates: VatRateTable | None = None,
    items: ItemSource | None = None,
    workers: int = DEFAULT_WORKERS,
    on_batch: Callable[[], None] = lambda: None,
) -> RunReport:
    """Bill the month before `run_date` (B-03, B-04): one decision per payer, exactly once.

    Idempotent and safe to run concurrently or after a crash: payers are billed in batches, each
    in one transaction that takes an advisory lock per (payer, period), skips payers already
    decided and writes their outcomes, invoices and outbox rows together; the primary key of
    `billing_outcomes` and `UNIQUE (payer_id, billing_period)` of `invoices` make a second
    decision impossible. A payer whose billing fails is set aside with the reason (in
    `billing_failures`) and the others go on; a rerun bills what is left.
    """
    period = run_period(run_date, today_in_helsinki(clock))  # B-03, B-04: checked once
    attempt = await _start(sessions, clock, period)
    report = await bill_month(
        sessions,
        clock,
        price_book,
        period,
        attempt=attempt,
        batch_size=batch_size,
        vat_rates=vat_rates,
        items=items,
        workers=workers,
        on_batch=on_batch,
    )
    return await _finish(sessions, clock, period, [report])


async def _start(sessions: Sessions, clock: Clock, period: RunPeriod) -> int:
    """Refuse a run of an open month, else record its attempt."""
    async with sessions.begin() as session:
        repo = SqlAlchemyBillingRepository(session)
        if not await repo.month_ready(period.month):
            raise MonthNotClosedError(
                f"month {period.month} is not closed by metering yet (or its final usage has not all "
                "arrived); an open month is never billed"
            )
        return await repo.start_run(period.run_id, period.month, period.run_date, clock.now())


async def bill_month(
    sessions: Sessions,
    clock: Clock,
    price_book: PriceBook,
    period: RunPeriod,
    *,
    attempt: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    vat_rates: VatRateTable | None = None,
    items: ItemSource | None = None,
    workers: int = DEFAULT_WORKERS,
    on_batch: Callable[[], None] = lambda: None,
) -> RunReport:
    """Plan the month and bill every payer not decided yet; the attempt is recorded by the caller."""
    month, run_id = period.month, period.run_id
    planning = time.perf_counter()
    async with sessions() as session:
        work, unbillable = await plan_month(session, month, sessions)
        tiers = await SqlAlchemyBillingRepository(session).tier_book()
        decided = await SqlAlchemyBillingRepository(session).decided_payers(month)
    report = RunReport(run_id=run_id, run_date=period.run_date, billing_month=str(month), attempt=attempt)
    report.plan_seconds = round(time.perf_counter() - planning, 3)
    todo = [work[p] for p in sorted(work) if p not in decided]
    report.already_billed = len(work) - len(todo)
    report.payers = len(todo)
    pricing = Pricing(price_book, shipped_vat_rates() if vat_rates is None else vat_rates, tiers)
    ctx = _Context(period, pricing, clock, items)
    log.info(
        "billing_run_started",
        run_id=run_id,
        month=str(month),
        attempt=attempt,
        payers=len(todo),
        plan_seconds=report.plan_seconds,
    )
    async with sessions.begin() as session:
        repo = SqlAlchemyBillingRepository(session)
        await repo.add_progress(run_id, planned=len(todo), now=clock.now())
        if unbillable:
            # Adjustments of months without a billable contract: nothing was or will be billed.
            await repo.mark_adjustments_billed(await _numbers_of(repo, unbillable), month, {})
    failures: dict[str, str] = {}
    batches = iter([todo[i : i + batch_size] for i in range(0, len(todo), batch_size)])

    async def worker() -> None:
        # Several workers overlap one batch's Python with another's database round trips; their
        # batches hold disjoint payers, so they never wait for each other's locks.
        for batch in batches:
            tally, batch_failures, raced = await _bill_with_fallback(sessions, ctx, batch)
            report.tally += tally
            report.already_billed += raced
            failures.update(batch_failures)
            async with sessions.begin() as session:
                await SqlAlchemyBillingRepository(session).add_progress(
                    run_id, done=len(batch), now=clock.now()
                )
            on_batch()

    # The plan (every contract of the month) is long-lived and acyclic: freezing it keeps the
    # cyclic garbage collector from walking it again and again while the batches allocate.
    gc.freeze()
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    finally:
        gc.unfreeze()
    report.failures = [{"payer_id": p, "reason": r} for p, r in sorted(failures.items())]
    return report


async def _finish(
    sessions: Sessions, clock: Clock, period: RunPeriod, parts: Sequence[RunReport]
) -> RunReport:
    """Record the attempt's end; the report sums the parts and has the period's totals."""
    tally = RunTally()
    for part in parts:
        tally += part.tally
    merged = RunReport(
        run_id=period.run_id,
        run_date=period.run_date,
        billing_month=str(period.month),
        attempt=parts[0].attempt,
        payers=sum(p.payers for p in parts),
        tally=tally,
        already_billed=sum(p.already_billed for p in parts),
        failures=sorted((f for p in parts for f in p.failures), key=lambda f: f["payer_id"]),
        plan_seconds=max(p.plan_seconds for p in parts),
    )
    async with sessions.begin() as session:
        repo = SqlAlchemyBillingRepository(session)
        totals, period_failures = await repo.finish_run(
            period.run_id, period.month, already_billed=merged.already_billed, now=clock.now()
        )
        # P-08: partners make the month's commission statements once they have all of it; the
        # announcement commits with the run's end, after every invoice it counts.
        finished = BillingRunFinishedV1(
            event_id=uuid.uuid4(),
            occurred_at=clock.now(),
            producer=PRODUCER,
            run_id=period.run_id,
            billing_period=str(period.month),
            run_date=period.run_date,
            attempt=merged.attempt,
            status="completed_with_failures" if period_failures else "completed",
            invoices_issued=totals.issued,
            held=totals.held,
            failed=len(period_failures),
            credit_notes_issued=await repo.credit_notes_dated_in(period.month),
        )
        await enqueue(session, t.runtime_tables.outbox, [outgoing(finished)], clock)
    merged.status = "completed_with_failures" if period_failures else "completed"
    merged.totals = {
        "issued": totals.issued,
        "held": totals.held,
        "zero": totals.zero,
        "nothing_to_bill": totals.nothing,
        "failed": len(period_failures),
    }
    log.info(
        "billing_run_finished",
        run_id=merged.run_id,
        month=merged.billing_month,
        issued=merged.invoices_issued,
        held=merged.held,
        already_billed=merged.already_billed,
        failures=len(merged.failures),
    )
    return merged


async def _numbers_of(
    repo: SqlAlchemyBillingRepository, keys: Iterable[tuple[str, YearMonth]]
) -> list[tuple[str, YearMonth, int]]:
    return [
        (a.environment_id, a.month, a.adjustment_no)
        for a in await repo.pending_adjustments_of(keys, lock=True)
    ]


async def preview_billing(
    sessions: Sessions,
    clock: Clock,
    price_book: PriceBook,
    run_date: dt.date,
    *,
    vat_rates: VatRateTable | None = None,
    items: ItemSource | None = None,
) -> tuple[YearMonth, bool, list[PlannedInvoice], dict[str, str]]:
    """A dry run: what a run on `run_date` would do now, writing nothing and taking no numbers.

    Also for a month metering has not closed yet (its usage so far); the second value says
    whether the month is closed. B-03 refuses a date before the month's first business day.
    """
    period = billing_period(run_date)
    async with sessions() as session:
        repo = SqlAlchemyBillingRepository(session)
        closed = await repo.month_ready(period.month)
        work, _ = await plan_month(session, period.month)
        tiers = await repo.tier_book()
        decided = await repo.decided_payers(period.month)
        pricing = Pricing(price_book, shipped_vat_rates() if vat_rates is None else vat_rates, tiers)
        ctx = _Context(period, pricing, clock, items)
        todo = [work[p] for p in sorted(work) if p not in decided]
        production_items, item_errors = await production_month_items(period.month, items, todo)
        results, failures = await _compute_batch(
            session, ctx, todo, lock=False, production_items=production_items, item_errors=item_errors
        )
    planned = [PlannedInvoice(r.payer_id, r.settlement, r.payer_terms, r.is_final) for r in results]
    return period.month, closed, planned, failures
