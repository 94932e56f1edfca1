"""The monthly billing run (B-03…B-05, B-14…B-18, P-07, P-08): each payer's period decided exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.invoicing import InvoiceHeldV1, InvoiceIssuedV1, InvoiceLine
from billing_contracts.registry import topic_for
from invoicing import tables as t
from invoicing.billing.domain import (
    PRODUCTION_MONTH_ITEM_KINDS,
    ChargeKind,
    ChargeLine,
    EnvironmentContract,
    MonthlyUsage,
    Settlement,
    SettlementKind,
    TierBook,
    Unit,
    charge_lines,
    correction_lines,
    counts_from_production_date,
    due_date,
    settle_payer,
    software_net_by_reseller,
    usage_from_production_date,
)
from invoicing.billing.repository import Adjustment, HeldRow, SqlAlchemyBillingRepository
from invoicing.billing.specification import ItemSource
from invoicing.billing.wire import check_against_contract, invoice_json
from invoicing.calendar import YearMonth, billing_month_for_run, run_day
from invoicing.contracts.domain import ContractTerms
from invoicing.contracts.repository import (
    contract_row_of_environment,
    contract_terms_for_month,
    contract_terms_of,
)
from invoicing.money import ZERO
from invoicing.prices.domain import PackageCode, PriceBook, PriceList
from invoicing.prices.loader import shipped_vat_rates
from invoicing.prices.vat import VatRateTable
from invoicing.references import reference_for_invoice_number
from service_runtime.bulk import jsonb
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.outbox import OutgoingMessage, enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "invoicing"
DEFAULT_BATCH_SIZE = 1000  # payers per transaction: each takes one advisory lock per payer
DEFAULT_WORKERS = 2
_LOOKUPS = 4  # sessions looking up the terms of corrected months at once


class NotABillingDayError(Exception):
    """B-03: a run bills the month before its date, and never before that month's first business day."""


class MonthNotClosedError(Exception):
    """The billed month is not closed by metering yet; an open month is never billed."""


class AdvanceBillingError(Exception):
    """B-04: a run date after today would bill a month that has not ended: nothing is billed in advance."""


def failure_reason(exc: BaseException) -> str:
    """A payer's failure for the operator: the error's first line, without SQL or parameters."""
    error = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:1000]


def run_id_of(month: YearMonth) -> str:
    """One run record per billing period; every attempt (rerun, concurrent run) updates it."""
    return f"run-{month}"


def check_run_date(run_date: dt.date, clock: Clock) -> YearMonth:
    """The month a run on `run_date` bills (B-04), or the reason it may not run (B-03, B-04)."""
    first = run_day(YearMonth.of(run_date))
    if run_date < first:
        raise NotABillingDayError(
            f"{run_date.isoformat()} is before {first.isoformat()}, the first Finnish business day of "
            "its month, when the billing of the month before may run (B-03)"
        )
    today = today_in_helsinki(clock)
    if run_date > today:
        raise AdvanceBillingError(
            f"run date {run_date.isoformat()} is after today ({today.isoformat()} in Helsinki): "
            "nothing is billed in advance (B-04)"
        )
    return billing_month_for_run(run_date)


@dataclass
class RunReport:
    """What one call of the run did, and the period's totals after it."""

    run_id: str
    run_date: dt.date
    billing_month: str
    attempt: int = 0
    payers: int = 0  # payers this call considered (not already decided)
    invoices_issued: int = 0
    held: int = 0
    zero: int = 0
    nothing_to_bill: int = 0
    already_billed: int = 0  # payers decided by an earlier or concurrent run
    failures: list[dict[str, str]] = field(default_factory=list)
    status: str = "running"
    totals: dict[str, int] = field(default_factory=dict)
    plan_seconds: float = 0.0  # reading the month: contracts, held lines, corrections


@dataclass(frozen=True, slots=True)
class Correction:
    """A pending adjustment of an earlier month, with the terms of that month (whose payer it bills)."""

    terms: ContractTerms
    month: YearMonth


@dataclass(slots=True)
class PayerWork:
    """Everything a run knows up front about one payer of the billed month."""

    payer_id: str
    terms: list[ContractTerms] = field(default_factory=list)  # billable in the month
    corrections: list[Correction] = field(default_factory=list)
    #: For a payer left with only held lines: the terms of a month it was billed, for its address.
    last_known: ContractTerms | None = None


@dataclass(frozen=True, slots=True)
class PayerResult:
    """One payer's settlement and what it was computed from."""

    payer_id: str
    settlement: Settlement
    payer_terms: ContractTerms | None
    environments: tuple[str, ...]  # environment-months of the billed month
    adjustments: tuple[tuple[str, YearMonth, int], ...]  # folded in or corrected
    reseller_of: Mapping[str, str | None]
    is_final: bool


@dataclass(frozen=True, slots=True)
class PlannedInvoice:
    """A dry run's view of one payer: what the run would do (no number is taken)."""

    payer_id: str
    settlement: Settlement
    payer_terms: ContractTerms | None
    is_final: bool


@dataclass
class _Context:
    month: YearMonth
    run_id: str
    run_date: dt.date
    price_book: PriceBook
    tiers: TierBook
    vat_rates: VatRateTable
    clock: Clock
    items: ItemSource | None = None  # metering's item lists, for production months (B-01)
    period: str = field(init=False)  # the billed month as on the wire, YYYY-MM
    last_day: dt.date = field(init=False)
    run_month: YearMonth = field(init=False)
    _lists: dict[YearMonth, PriceList] = field(default_factory=dict)
    _rates: dict[tuple[YearMonth, PackageCode], Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.period = str(self.month)
        self.last_day = self.month.last_day
        self.run_month = self.month.next()  # B-15: the January and July runs

    def price_list(self, month: YearMonth) -> PriceList:
        found = self._lists.get(month)
        if found is None:
            found = self._lists[month] = self.price_book.price_list_for(month)
        return found

    def vat_rate(self, month: YearMonth, package: PackageCode) -> Decimal:
        """The VAT rate of the package's category in force for the service month (B-18)."""
        key = (month, package)
        found = self._rates.get(key)
        if found is None:
            category = self.price_list(month).package(package).vat_category
            found = self._rates[key] = self.vat_rates.rate_for(month, category)
        return found


class ProductionMonthError(Exception):
    """B-01: a production month that starts mid-month cannot be counted without metering's items."""


ItemsOf = Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]


async def _production_month_items(
    ctx: _Context, batch: Sequence[PayerWork]
) -> tuple[dict[str, Any], dict[str, str]]:
    """B-01: metering's items of each environment whose production date falls inside the month.

    Read before the batch's transaction (metering's closed month does not change under it in a
    way the run could see anyway; a late change comes as an adjustment). Errors by environment.
    """
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for work in batch:
        for terms in work.terms:
            if not counts_from_production_date(_contract(terms), ctx.month):
                continue
            env = terms.environment_id
            if ctx.items is None:
                errors[env] = (
                    f"B-01: {env} went into production on {terms.production_date}; counting its usage from "
                    "that day needs metering's item lists (set INVOICING_METERING_URL)"
                )
                continue
            try:
                found[env] = {
                    kind: await ctx.items.items(env, ctx.period, kind) for kind in PRODUCTION_MONTH_ITEM_KINDS
                }
            except Exception as exc:  # metering down: this payer waits for the rerun, the others go on
                errors[env] = f"B-01: metering's item lists of {env} could not be read: {failure_reason(exc)}"
    return found, errors


PriceBookSource = Callable[[AsyncSession], Awaitable[PriceBook]]
NO_USAGE = MonthlyUsage()


# --- planning (shared by the run and the dry run) ---


async def _plan(
    session: AsyncSession, month: YearMonth, sessions: async_sessionmaker[AsyncSession] | None = None
) -> tuple[dict[str, PayerWork], set[tuple[str, YearMonth]]]:
    """Every payer with something for `month`: contracts billable in it, held lines, corrections.

    Also returns the pending adjustments of environment-months that have no contract (nothing
    was or will be billed for them), which the run marks as seen.
    """
    repo = SqlAlchemyBillingRepository(session)
    work: dict[str, PayerWork] = {}
    for terms in await contract_terms_for_month(session, month):
        work.setdefault(terms.payer_id, PayerWork(terms.payer_id)).terms.append(terms)
    held_payers = await repo.payers_with_held_lines()
    for payer in held_payers:
        work.setdefault(payer, PayerWork(payer))
    pending = await repo.pending_adjustment_keys(before=month)
    unbillable: set[tuple[str, YearMonth]] = set()
    # Late usage is rare: the terms of each corrected environment-month, one contract at a time,
    # in a few sessions at once when there are many.
    keys = sorted(pending, key=lambda k: (k[0], k[1]))
    parts = [keys[i::_LOOKUPS] for i in range(_LOOKUPS)] if sessions is not None else [keys]

    async def look_up(part: list[tuple[str, YearMonth]]) -> list[ContractTerms | None]:
        if sessions is None:
            return [await _terms_of_environment(session, env, m) for env, m in part]
        async with sessions() as own:
            return [await _terms_of_environment(own, env, m) for env, m in part]

    found = await asyncio.gather(*(look_up(part) for part in parts if part))
    for part, terms_of in zip([p for p in parts if p], found, strict=True):
        for (env, corrected), of_month in zip(part, terms_of, strict=True):
            if of_month is None:
                unbillable.add((env, corrected))
                continue
            work.setdefault(of_month.payer_id, PayerWork(of_month.payer_id)).corrections.append(
                Correction(of_month, corrected)
            )
    for w in work.values():
        w.corrections.sort(key=lambda c: (c.terms.environment_id, c.month))
    # A payer with held lines but no contract now (its environments moved to another payer):
    # its final invoice (B-15) goes to the name and address of a month it was billed for.
    for payer, (env, period) in (
        await repo.held_environment_of([p for p in held_payers if not work[p].terms])
    ).items():
        if not work[payer].corrections:
            work[payer].last_known = await _terms_of_environment(session, env, period)
    return work, unbillable


async def _terms_of_environment(
    session: AsyncSession, environment_id: str, month: YearMonth
) -> ContractTerms | None:
    """The terms of an environment's contract for `month`, if the contract was billable in it."""
    row = await contract_row_of_environment(session, environment_id)
    if row is None:
        return None
    terms = await contract_terms_of(session, row["contract_id"], month)
    if terms is None or not _contract(terms).is_billable_in(month):
        return None
    return terms


def _contract(terms: ContractTerms) -> EnvironmentContract:
    return EnvironmentContract(
        environment_id=terms.environment_id,
        package=terms.package,
        production_date=terms.production_date,
        end_date=terms.end_date,
        own_use=terms.own_use,
        reseller_partner_id=terms.reseller_partner_id,
    )


def _vat_rate(ctx: _Context, month: YearMonth, terms: ContractTerms) -> Decimal:
    return ctx.vat_rate(month, terms.package)


def _tier(ctx: _Context, terms: ContractTerms, month: YearMonth) -> Any:
    # P-07: the partner of an own-use environment is its accounting firm (the firm's own books).
    return ctx.tiers.tier_for(terms.accounting_firm_id, month) if terms.own_use else None


def _payer_terms(work: PayerWork) -> ContractTerms | None:
    """Whose name and address the invoice carries: the payer's own contract, else the first (B-17)."""
    candidates = work.terms or [c.terms for c in work.corrections]
    if not candidates:
        return work.last_known
    own = [x for x in candidates if x.business_id == work.payer_id]
    return min(own or candidates, key=lambda x: x.environment_id)


def held_line(data: Mapping[str, Any], carried_from: YearMonth) -> ChargeLine:
    """A held line back from its stored InvoiceLine JSON."""
    line = InvoiceLine.model_validate(data)
    return ChargeLine(
        environment_id=line.environment_id,
        kind=ChargeKind(line.charge_kind or ChargeKind.MONTHLY_FEE.value),
        product_code=line.product_code,
        description=line.description,
        quantity=line.quantity,
        unit=Unit(line.unit),
        unit_price=line.unit_price,
        net=line.net,
        vat_rate=line.vat_rate,
        period_start=line.period_start,
        period_end=line.period_end,
        is_correction=line.is_correction,
        carried_from=carried_from,
    )


def wire_line(ln: ChargeLine, line_no: int) -> InvoiceLine:
    return InvoiceLine.model_validate(line_fields(ln, line_no))


def _settle(
    ctx: _Context,
    work: PayerWork,
    *,
    usage: Mapping[str, MonthlyUsage],
    folded: Mapping[str, list[int]],
    held: Sequence[HeldRow],
    adjustments: Mapping[tuple[str, YearMonth], Sequence[Adjustment]],
    billed: set[tuple[str, YearMonth]],
    production_items: ItemsOf | None = None,
    item_errors: Mapping[str, str] | None = None,
) -> PayerResult:
    """One payer's lines of the month, its corrections and held lines, and the B-15 decision.

    `adjustments` are the batch's pending adjustments by (environment, month), oldest first.
    """
    month = ctx.month
    last_day = ctx.last_day
    price_list = ctx.price_list(month)
    lines: list[ChargeLine] = []
    applies = True
    is_final = not work.terms  # a payer left without contracts: everything still held goes out
    used_adjustments: list[tuple[str, YearMonth, int]] = []
    for terms in sorted(work.terms, key=lambda x: x.environment_id):
        env = terms.environment_id
        contract = _contract(terms)
        month_usage = usage.get(env, NO_USAGE)
        if counts_from_production_date(contract, month):
            # B-01: usage created before the production date is not billed.
            if item_errors and env in item_errors:
                raise ProductionMonthError(item_errors[env])
            if production_items is None or env not in production_items:
                raise ProductionMonthError(f"B-01: no item lists of {env} for its production month")
            month_usage = usage_from_production_date(
                terms.production_date, month_usage, production_items[env]
            )
        lines += charge_lines(
            contract,
            month_usage,
            month=month,
            price_list=price_list,
            vat_rate=_vat_rate(ctx, month, terms),
            own_use_tier=_tier(ctx, terms, month),
        )
        applies &= price_list.package(terms.package).minimum_invoice_applies
        # B-27: the invoice of a contract's last month is final and always sent (B-15).
        if terms.end_date is not None and terms.end_date <= last_day:
            is_final = True
        used_adjustments += [(env, month, n) for n in folded.get(env, ())]
    # B-04: late usage of months already billed, as labelled corrections; never reopening them.
    for correction in work.corrections:  # sorted by environment and month in the plan
        key = (correction.terms.environment_id, correction.month)
        chain = adjustments.get(key, ())
        if not chain or key not in billed:
            continue  # not billed yet: its own run will bill the adjusted figures
        corrected_list = ctx.price_list(correction.month)
        lines += correction_lines(
            _contract(correction.terms),
            previous=chain[0].previous,
            current=chain[-1].usage,
            month=correction.month,
            price_list=corrected_list,
            vat_rate=_vat_rate(ctx, correction.month, correction.terms),
            own_use_tier=_tier(ctx, correction.terms, correction.month),
        )
        applies &= corrected_list.package(correction.terms.package).minimum_invoice_applies
        used_adjustments += [(a.environment_id, a.month, a.adjustment_no) for a in chain]
    carried = [held_line(data, row.billing_period) for row in held for data in row.lines]
    settlement = settle_payer(lines, carried, run_month=ctx.run_month, is_final=is_final, applies=applies)
    reseller_of = {x.environment_id: x.reseller_partner_id for x in work.terms}
    for c in work.corrections:
        reseller_of.setdefault(c.terms.environment_id, c.terms.reseller_partner_id)
    return PayerResult(
        payer_id=work.payer_id,
        settlement=settlement,
        payer_terms=_payer_terms(work),
        environments=tuple(sorted(x.environment_id for x in work.terms)),
        adjustments=tuple(used_adjustments),
        reseller_of=reseller_of,
        is_final=is_final,
    )


async def _compute_batch(
    session: AsyncSession,
    ctx: _Context,
    batch: Sequence[PayerWork],
    *,
    lock: bool,
    production_items: ItemsOf | None = None,
    item_errors: Mapping[str, str] | None = None,
) -> tuple[list[PayerResult], dict[str, str]]:
    """Read what the batch needs (locking it for the run) and settle each payer; failures by payer."""
    repo = SqlAlchemyBillingRepository(session)
    payers = [w.payer_id for w in batch]
    envs = sorted({x.environment_id for w in batch for x in w.terms})
    usage, folded_keys = await repo.usage_of(ctx.month, envs, lock=lock)
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
                _settle(
                    ctx,
                    work,
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
            log.warning("payer_billing_failed", payer_id=work.payer_id, month=ctx.period, error=str(exc))
            failures[work.payer_id] = failure_reason(exc)
    return results, failures


# --- persisting one batch ---


def line_fields(ln: ChargeLine, line_no: int) -> dict[str, Any]:
    """An invoice line's fields as the contract names them (`InvoiceLine`)."""
    return {
        "line_no": line_no,
        "environment_id": ln.environment_id,
        "product_code": ln.product_code,
        "description": ln.description,
        "period_start": ln.period_start,
        "period_end": ln.period_end,
        "quantity": ln.quantity,
        "unit": ln.unit.value,
        "unit_price": ln.unit_price,
        "net": ln.net,
        "vat_rate": ln.vat_rate,
        "is_correction": ln.is_correction,
        "charge_kind": ln.kind.value,
        "carried_from_period": None if ln.carried_from is None else str(ln.carried_from),
    }


def _invoice_fields(
    ctx: _Context, result: PayerResult, *, number: int, invoice_id: str, now: dt.datetime
) -> dict[str, Any]:
    """The issued invoice's fields as the contract names them (`InvoiceIssuedV1`)."""
    payer = result.payer_terms
    if payer is None:
        raise ValueError(f"payer {result.payer_id} has no contract to take its name and address from")
    totals = result.settlement.totals
    term_days = ctx.price_list(ctx.month).payment_term_days
    carried = sum((ln.net for ln in totals.lines if ln.carried_from is not None), ZERO)
    return {
        "event_id": uuid.uuid4(),
        "occurred_at": now,
        "producer": PRODUCER,
        "invoice_id": invoice_id,
        "invoice_number": str(number),
        "reference_number": reference_for_invoice_number(number),
        "payer_id": result.payer_id,
        "payer_kind": payer.payer_kind,
        "payer_business_id": result.payer_id,
        "payer_name": payer.invoice_name,
        "billing_address": payer.billing_address,
        "billing_channel": payer.billing_channel,
        "einvoice_address": payer.einvoice_address,
        "billing_email": payer.billing_email,
        "billing_period": ctx.period,
        "invoice_date": ctx.run_date,
        "due_date": due_date(ctx.run_date, term_days),
        "lines": [line_fields(ln, i) for i, ln in enumerate(totals.lines, start=1)],
        "vat_totals": [{"vat_rate": v.vat_rate, "net": v.net, "vat": v.vat} for v in totals.vat_totals],
        "total_net": totals.total_net,
        "total_vat": totals.total_vat,
        "total_gross": totals.total_gross,
        "software_net_by_reseller": software_net_by_reseller(totals.lines, result.reseller_of),
        "final_invoice": result.is_final,
        "carried_net": carried,
    }


_ISSUED_TOPIC = topic_for(InvoiceIssuedV1)


def _held_message(ctx: _Context, result: PayerResult, now: dt.datetime) -> InvoiceHeldV1:
    settlement = result.settlement
    return InvoiceHeldV1(
        event_id=uuid.uuid4(),
        occurred_at=now,
        producer=PRODUCER,
        payer_id=result.payer_id,
        payer_business_id=result.payer_id,
        billing_period=ctx.period,
        held_net=settlement.totals.total_net,
        accumulated_held_net=settlement.accumulated_held_net,
        lines=[wire_line(ln, i) for i, ln in enumerate(settlement.lines, start=1)],
    )


async def _persist_batch(
    session: AsyncSession, ctx: _Context, results: Sequence[PayerResult], failures: Mapping[str, str]
) -> BatchCounts:
    repo = SqlAlchemyBillingRepository(session)
    now = ctx.clock.now()
    to_issue = [r for r in results if r.settlement.kind is SettlementKind.ISSUE]
    numbers = await repo.next_invoice_numbers(len(to_issue))
    invoice_of_payer: dict[str, str] = {}
    invoices: list[dict[str, Any]] = []
    messages: list[OutgoingMessage] = []
    for i, (result, number) in enumerate(zip(to_issue, numbers, strict=True)):
        invoice_id = f"INV-{number}"
        fields = _invoice_fields(ctx, result, number=number, invoice_id=invoice_id, now=now)
        document = invoice_json(fields)
        if i == 0:
            check_against_contract(document)  # a wrong document fails the batch, never goes out
        invoice_of_payer[result.payer_id] = invoice_id
        messages.append(
            OutgoingMessage(
                topic=_ISSUED_TOPIC,
                key=result.payer_id.encode(),  # InvoiceIssuedV1 is keyed by payer_id
                value=document,
                headers={"message_type": InvoiceIssuedV1.message_type, "event_id": str(fields["event_id"])},
            )
        )
        invoices.append(
            {
                "invoice_id": invoice_id,
                "invoice_number": number,
                "reference_number": fields["reference_number"],
                "payer_id": result.payer_id,
                "billing_period": ctx.period,
                "invoice_date": fields["invoice_date"],
                "due_date": fields["due_date"],
                "total_net": fields["total_net"],
                "total_vat": fields["total_vat"],
                "total_gross": fields["total_gross"],
                "status": "open",
                "run_id": ctx.run_id,
                "document": document.decode(),
                "created_at": now,
                "updated_at": now,
            }
        )
    held_rows: list[dict[str, Any]] = []
    released: dict[str, str | None] = {}
    outcomes: list[dict[str, Any]] = []
    env_months: list[dict[str, Any]] = []
    adjustment_keys: list[tuple[str, YearMonth, int]] = []
    adjustment_invoice: dict[str, str | None] = {}
    counts = BatchCounts()
    for result in results:
        settlement = result.settlement
        kind = settlement.kind
        issued_as = invoice_of_payer.get(result.payer_id)
        if kind is SettlementKind.HOLD and settlement.lines:
            held_rows.append(
                {
                    "payer_id": result.payer_id,
                    "billing_period": ctx.period,
                    "lines": jsonb(
                        [wire_line(ln, i).model_dump(mode="json") for i, ln in enumerate(settlement.lines, 1)]
                    ),
                    "net": settlement.totals.total_net,
                    "reason": str(settlement.reason),
                    "held_at": now,
                }
            )
            messages.append(outgoing(_held_message(ctx, result, now)))
        if kind in (SettlementKind.ISSUE, SettlementKind.ZERO):
            released[result.payer_id] = issued_as
        outcomes.append(
            {
                "payer_id": result.payer_id,
                "billing_period": ctx.period,
                "outcome": kind.value,
                "reason": None if settlement.reason is None else settlement.reason.value,
                "invoice_id": issued_as,
                "net": settlement.totals.total_net,
                "run_id": ctx.run_id,
                "decided_at": now,
            }
        )
        env_months += [
            {
                "environment_id": env,
                "month": ctx.period,
                "payer_id": result.payer_id,
                "billing_period": ctx.period,
            }
            for env in result.environments
        ]
        adjustment_keys += result.adjustments
        for env, _, _ in result.adjustments:
            adjustment_invoice[env] = issued_as
        counts.add(kind)
    await repo.save_outcomes(outcomes)
    await repo.save_invoices(invoices)
    await repo.save_billed_environment_months(env_months)
    await repo.save_held(held_rows)
    await repo.release_held(released, ctx.month)
    await repo.mark_adjustments_billed(adjustment_keys, ctx.month, adjustment_invoice)
    await repo.clear_failures(ctx.month, [r.payer_id for r in results])
    await repo.record_failures(ctx.month, failures, now)
    await enqueue(session, t.runtime_tables.outbox, messages, ctx.clock)
    return counts


@dataclass
class BatchCounts:
    issued: int = 0
    held: int = 0
    zero: int = 0
    nothing: int = 0

    def add(self, kind: SettlementKind) -> None:
        if kind is SettlementKind.ISSUE:
            self.issued += 1
        elif kind is SettlementKind.HOLD:
            self.held += 1
        elif kind is SettlementKind.ZERO:
            self.zero += 1
        else:
            self.nothing += 1


async def _bill_batch(
    sessions: async_sessionmaker[AsyncSession], ctx: _Context, batch: Sequence[PayerWork]
) -> tuple[BatchCounts, dict[str, str], int]:
    """Bill a batch of payers in one transaction; returns counts, failures and how many were already decided."""
    production_items, item_errors = await _production_month_items(ctx, batch)
    async with sessions.begin() as session:
        repo = SqlAlchemyBillingRepository(session)
        payers = [w.payer_id for w in batch]
        await repo.lock_payers(ctx.month, payers)
        decided = await repo.decided_among(ctx.month, payers)
        todo = [w for w in batch if w.payer_id not in decided]
        results, failures = await _compute_batch(
            session, ctx, todo, lock=True, production_items=production_items, item_errors=item_errors
        )
        counts = await _persist_batch(session, ctx, results, failures)
    return counts, failures, len(decided)


async def run_billing(
    sessions: async_sessionmaker[AsyncSession],
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
    attempt = await _start(sessions, clock, run_date)
    report = await bill_month(
        sessions,
        clock,
        price_book,
        run_date,
        attempt=attempt,
        batch_size=batch_size,
        vat_rates=vat_rates,
        items=items,
        workers=workers,
        on_batch=on_batch,
    )
    return await _finish(sessions, clock, report, [report])


async def _start(sessions: async_sessionmaker[AsyncSession], clock: Clock, run_date: dt.date) -> int:
    """Refuse a run that may not happen (B-03, B-04, an open month), else record its attempt."""
    month = check_run_date(run_date, clock)
    run_id = run_id_of(month)
    async with sessions.begin() as session:
        repo = SqlAlchemyBillingRepository(session)
        if not await repo.month_ready(month):
            raise MonthNotClosedError(
                f"month {month} is not closed by metering yet (or its final usage has not all "
                "arrived); an open month is never billed"
            )
        return await repo.start_run(run_id, month, run_date, clock.now())


async def bill_month(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    price_book: PriceBook,
    run_date: dt.date,
    *,
    attempt: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    vat_rates: VatRateTable | None = None,
    items: ItemSource | None = None,
    workers: int = DEFAULT_WORKERS,
    on_batch: Callable[[], None] = lambda: None,
) -> RunReport:
    """Plan the month and bill every payer not decided yet; the attempt is recorded by the caller."""
    month = billing_month_for_run(run_date)
    run_id = run_id_of(month)
    planning = time.perf_counter()
    async with sessions() as session:
        work, unbillable = await _plan(session, month, sessions)
        tiers = await SqlAlchemyBillingRepository(session).tier_book()
        decided = await SqlAlchemyBillingRepository(session).decided_payers(month)
    report = RunReport(run_id=run_id, run_date=run_date, billing_month=str(month), attempt=attempt)
    report.plan_seconds = round(time.perf_counter() - planning, 3)
    todo = [work[p] for p in sorted(work) if p not in decided]
    report.already_billed = len(work) - len(todo)
    report.payers = len(todo)
    rates = shipped_vat_rates() if vat_rates is None else vat_rates
    ctx = _Context(month, run_id, run_date, price_book, tiers, rates, clock, items)
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
            await repo.mark_adjustments_billed(
                [(env, m, n) for env, m, n in await _numbers_of(repo, unbillable)], month, {}
            )
    failures: dict[str, str] = {}
    batches = iter([todo[i : i + batch_size] for i in range(0, len(todo), batch_size)])

    async def worker() -> None:
        # Several workers overlap one batch's Python with another's database round trips; their
        # batches hold disjoint payers, so they never wait for each other's locks.
        for batch in batches:
            counts, batch_failures, raced = await _bill_with_fallback(sessions, ctx, batch)
            report.invoices_issued += counts.issued
            report.held += counts.held
            report.zero += counts.zero
            report.nothing_to_bill += counts.nothing
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
    sessions: async_sessionmaker[AsyncSession], clock: Clock, report: RunReport, parts: Sequence[RunReport]
) -> RunReport:
    """Record the attempt's end; the report sums the parts and has the period's totals."""
    month = YearMonth.parse(report.billing_month)
    merged = RunReport(
        run_id=report.run_id,
        run_date=report.run_date,
        billing_month=report.billing_month,
        attempt=report.attempt,
        payers=sum(p.payers for p in parts),
        invoices_issued=sum(p.invoices_issued for p in parts),
        held=sum(p.held for p in parts),
        zero=sum(p.zero for p in parts),
        nothing_to_bill=sum(p.nothing_to_bill for p in parts),
        already_billed=sum(p.already_billed for p in parts),
        failures=sorted((f for p in parts for f in p.failures), key=lambda f: f["payer_id"]),
        plan_seconds=max(p.plan_seconds for p in parts),
    )
    async with sessions.begin() as session:
        totals, period_failures = await SqlAlchemyBillingRepository(session).finish_run(
            report.run_id, month, already_billed=merged.already_billed, now=clock.now()
        )
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


async def _bill_with_fallback(
    sessions: async_sessionmaker[AsyncSession], ctx: _Context, batch: Sequence[PayerWork]
) -> tuple[BatchCounts, dict[str, str], int]:
    """A batch in one transaction; if the transaction fails, each payer alone, so one cannot stop the rest."""
    try:
        return await _bill_batch(sessions, ctx, batch)
    except (DBAPIError, ValueError, LookupError) as exc:
        if len(batch) == 1:
            reason = failure_reason(exc)
            log.warning("payer_billing_failed", payer_id=batch[0].payer_id, month=ctx.period, error=reason)
            async with sessions.begin() as session:
                await SqlAlchemyBillingRepository(session).record_failures(
                    ctx.month, {batch[0].payer_id: reason}, ctx.clock.now()
                )
            return BatchCounts(), {batch[0].payer_id: reason}, 0
        log.warning("billing_batch_failed_retrying_one_by_one", size=len(batch), error=type(exc).__name__)
    total = BatchCounts()
    failures: dict[str, str] = {}
    raced = 0
    for work in batch:
        counts, failed, r = await _bill_with_fallback(sessions, ctx, [work])
        total.issued += counts.issued
        total.held += counts.held
        total.zero += counts.zero
        total.nothing += counts.nothing
        failures |= failed
        raced += r
    return total, failures, raced


async def preview_billing(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    price_book: PriceBook,
    run_date: dt.date,
    *,
    vat_rates: VatRateTable | None = None,
    items: ItemSource | None = None,
) -> tuple[YearMonth, bool, list[PlannedInvoice], dict[str, str]]:
    """A dry run: what a run on `run_date` would do now, writing nothing and taking no numbers.

    Also for a month metering has not closed yet (its usage so far); the second value says
    whether the month is closed.
    """
    month = billing_month_for_run(run_date)
    first = run_day(YearMonth.of(run_date))
    if run_date < first:
        raise NotABillingDayError(
            f"{run_date.isoformat()} is before {first.isoformat()}, the first Finnish business day of its month (B-03)"
        )
    async with sessions() as session:
        repo = SqlAlchemyBillingRepository(session)
        closed = await repo.month_ready(month)
        work, _ = await _plan(session, month)
        tiers = await repo.tier_book()
        decided = await repo.decided_payers(month)
        rates = shipped_vat_rates() if vat_rates is None else vat_rates
        ctx = _Context(month, run_id_of(month), run_date, price_book, tiers, rates, clock, items)
        todo = [work[p] for p in sorted(work) if p not in decided]
        production_items, item_errors = await _production_month_items(ctx, todo)
        results, failures = await _compute_batch(
            session, ctx, todo, lock=False, production_items=production_items, item_errors=item_errors
        )
    planned = [PlannedInvoice(r.payer_id, r.settlement, r.payer_terms, r.is_final) for r in results]
    return month, closed, planned, failures
