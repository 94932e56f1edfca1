"""Invoicing use cases: take usage in, run the monthly billing, issue invoices (contracts: contract_service)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message
from billing_contracts.contracts import PayerKind
from billing_contracts.invoicing import (
    InvoiceIssuedV1,
    InvoiceLine,
    VatTotal,
)
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFigures, UsageFinalizedV1
from invoicing import tables as t
from invoicing.billing import (
    ChargeLine,
    EnvironmentContract,
    MonthlyUsage,
    assemble_invoice,
    charge_lines,
    due_date,
)
from invoicing.calendar import YearMonth, billing_month_for_run, is_business_day
from invoicing.money import FINNISH_VAT_RATES
from invoicing.pricing import PackageCode, PriceBook
from invoicing.references import reference_for_invoice_number
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.outbox import enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "invoicing"


def _usage_row(figures: UsageFigures) -> dict[str, Any]:
    return figures.model_dump(mode="json")


class UsageIntake:
    """Batch use case for metering's output: final usage, month closes and late adjustments."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        now = self._clock.now()
        for event in events:
            match event:
                case UsageFinalizedV1():
                    stmt = insert(t.monthly_usage).values(
                        environment_id=event.environment_id,
                        month=event.month,
                        usage=_usage_row(event.usage),
                        received_at=now,
                    )
                    await session.execute(stmt.on_conflict_do_nothing())
                case UsageAdjustedV1():
                    await session.execute(
                        insert(t.usage_adjustments)
                        .values(
                            environment_id=event.environment_id,
                            month=event.month,
                            adjustment_no=event.adjustment_no,
                            usage=_usage_row(event.usage),
                            previous=_usage_row(event.previous),
                        )
                        .on_conflict_do_nothing()
                    )
                case MonthClosedV1():
                    await session.execute(
                        insert(t.closed_months)
                        .values(
                            month=event.month,
                            environment_count=event.environment_count,
                            closed_at=event.occurred_at,
                        )
                        .on_conflict_do_nothing()
                    )
        return []


def monthly_usage(data: dict[str, Any] | None) -> MonthlyUsage:
    if data is None:
        return MonthlyUsage()
    f = UsageFigures.model_validate(data)
    return MonthlyUsage(
        vouchers=f.vouchers,
        payees=f.payees,
        einvoices_sent=f.einvoices_sent,
        einvoices_received=f.einvoices_received,
        billable_users=f.billable_users,
        signatures=f.signatures,
        billable_hours={k: Decimal(v) for k, v in f.billable_hours.items()},
    )


class NotABillingDayError(Exception):
    """B-03: billing runs only on the first Finnish business day of a month."""


class MonthNotClosedError(Exception):
    """The billed month is not closed by metering yet; an open month is never billed."""


@dataclass
class RunReport:
    run_id: str
    run_date: dt.date
    billing_month: str
    payers: int = 0
    invoices_issued: int = 0
    already_billed: int = 0
    nothing_to_bill: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)


def _is_first_business_day(day: dt.date) -> bool:
    first = day.replace(day=1)
    while not is_business_day(first):
        first += dt.timedelta(days=1)
    return first == day


async def _month_ready(session: AsyncSession, month: str) -> bool:
    closed = (
        await session.execute(
            select(t.closed_months.c.environment_count).where(t.closed_months.c.month == month)
        )
    ).scalar_one_or_none()
    if closed is None:
        return False
    received = await session.scalar(select(func.count()).where(t.monthly_usage.c.month == month))
    return int(received or 0) >= int(closed)


async def run_billing(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, price_book: PriceBook, run_date: dt.date
) -> RunReport:
    """The monthly billing run (B-03, B-04): one invoice per payer for the month before `run_date`.

    Idempotent and safe to run concurrently: each payer is billed in its own transaction under an
    advisory lock, and `UNIQUE (payer_id, billing_period)` makes a second invoice impossible. A
    payer that fails is reported with the reason and the others go on; a rerun bills what is left.
    """
    if not _is_first_business_day(run_date):
        raise NotABillingDayError(
            f"{run_date.isoformat()} is not the first Finnish business day of its month (B-03)"
        )
    month = billing_month_for_run(run_date)
    month_key = str(month)
    run_id = f"run-{run_date.isoformat()}"
    now = clock.now()
    async with sessions.begin() as session:
        if not await _month_ready(session, month_key):
            raise MonthNotClosedError(f"month {month_key} is not closed by metering yet; it cannot be billed")
        await session.execute(
            insert(t.billing_runs)
            .values(
                run_id=run_id, run_date=run_date, billing_month=month_key, status="running", started_at=now
            )
            .on_conflict_do_update(index_elements=[t.billing_runs.c.run_id], set_={"status": "running"})
        )
        contract_rows = (await session.execute(select(t.contracts))).mappings().all()
    report = RunReport(run_id=run_id, run_date=run_date, billing_month=month_key)
    by_payer: dict[str, list[Any]] = defaultdict(list)
    for row in contract_rows:
        contract = _contract(row)
        if contract.is_billable_in(month):
            by_payer[row["payer_id"]].append(row)
    report.payers = len(by_payer)
    price_list = price_book.price_list_for(month)
    vat_rate = FINNISH_VAT_RATES.rate_for(month)
    for payer_id in sorted(by_payer):
        try:
            issued = await _bill_payer(
                sessions,
                clock,
                payer_id=payer_id,
                rows=by_payer[payer_id],
                month=month,
                run_id=run_id,
                run_date=run_date,
                price_list=price_list,
                vat_rate=vat_rate,
            )
        except Exception as exc:
            log.exception("payer_billing_failed", payer_id=payer_id, month=month_key)
            report.failures.append({"payer_id": payer_id, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        if issued == "issued":
            report.invoices_issued += 1
        elif issued == "already_billed":
            report.already_billed += 1
        else:
            report.nothing_to_bill += 1
    async with sessions.begin() as session:
        await session.execute(
            update(t.billing_runs)
            .where(t.billing_runs.c.run_id == run_id)
            .values(
                status="completed" if not report.failures else "completed_with_failures",
                finished_at=clock.now(),
                payers=report.payers,
                invoices_issued=t.billing_runs.c.invoices_issued + report.invoices_issued,
                already_billed=report.already_billed,
                failures=report.failures,
            )
        )
    log.info(
        "billing_run_finished",
        run_id=run_id,
        month=month_key,
        issued=report.invoices_issued,
        already_billed=report.already_billed,
        failures=len(report.failures),
    )
    return report


def _contract(row: Any) -> EnvironmentContract:
    return EnvironmentContract(
        environment_id=row["environment_id"],
        package=PackageCode(row["package"]),
        production_date=row["production_date"],
        end_date=row["end_date"],
        own_use=row["own_use"],
        reseller_partner_id=row["reseller_partner_id"],
    )


async def _bill_payer(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    payer_id: str,
    rows: list[Any],
    month: YearMonth,
    run_id: str,
    run_date: dt.date,
    price_list: Any,
    vat_rate: Decimal,
) -> str:
    """Bill one payer for one month: `issued`, `already_billed` or `nothing_to_bill`."""
    month_key = str(month)
    async with sessions.begin() as session:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"bill:{payer_id}:{month_key}"}
        )
        exists = await session.scalar(
            select(t.invoices.c.invoice_id).where(
                t.invoices.c.payer_id == payer_id, t.invoices.c.billing_period == month_key
            )
        )
        if exists is not None:
            return "already_billed"
        envs = [r["environment_id"] for r in rows]
        found = await session.execute(
            select(t.monthly_usage.c.environment_id, t.monthly_usage.c.usage).where(
                t.monthly_usage.c.month == month_key, t.monthly_usage.c.environment_id.in_(envs)
            )
        )
        # Not dict(result): a Result has .keys(), so dict() would treat it as a mapping.
        usage: dict[str, dict[str, Any]] = {env: data for env, data in found.tuples()}  # noqa: C416
        lines: list[ChargeLine] = []
        for row in sorted(rows, key=lambda r: r["environment_id"]):
            lines += charge_lines(
                _contract(row),
                monthly_usage(usage.get(row["environment_id"])),
                month=month,
                price_list=price_list,
                vat_rate=vat_rate,
            )
        if not lines:
            return "nothing_to_bill"
        totals = assemble_invoice(lines)
        number = int(await session.scalar(t.invoice_number_seq.next_value()) or 0)
        invoice_id = f"INV-{number}"
        first = rows[0]
        reseller_nets: dict[str, Decimal] = defaultdict(Decimal)
        reseller_of = {r["environment_id"]: r["reseller_partner_id"] for r in rows}
        for ln in totals.lines:
            reseller = reseller_of.get(ln.environment_id)
            if reseller and ln.kind.is_software:
                reseller_nets[reseller] += ln.net
        issued = InvoiceIssuedV1(
            event_id=uuid.uuid4(),
            occurred_at=clock.now(),
            producer=PRODUCER,
            invoice_id=invoice_id,
            invoice_number=str(number),
            reference_number=reference_for_invoice_number(number),
            payer_id=payer_id,
            payer_kind=PayerKind(first["payer_kind"]),
            payer_business_id=payer_id,
            payer_name=first["company_name"],
            billing_address=first["billing_address"],
            billing_channel=first["billing_channel"],
            einvoice_address=first["einvoice_address"],
            billing_email=first["billing_email"],
            billing_period=month_key,
            invoice_date=run_date,
            due_date=due_date(run_date, price_list.payment_term_days),
            lines=[
                InvoiceLine(
                    line_no=i,
                    environment_id=ln.environment_id,
                    product_code=ln.product_code,
                    description=ln.description,
                    period_start=ln.period_start,
                    period_end=ln.period_end,
                    quantity=ln.quantity,
                    unit=ln.unit.value,
                    unit_price=ln.unit_price,
                    net=ln.net,
                    vat_rate=ln.vat_rate,
                )
                for i, ln in enumerate(totals.lines, start=1)
            ],
            vat_totals=[VatTotal(vat_rate=v.vat_rate, net=v.net, vat=v.vat) for v in totals.vat_totals],
            total_net=totals.total_net,
            total_vat=totals.total_vat,
            total_gross=totals.total_gross,
            software_net_by_reseller=dict(reseller_nets),
        )
        await session.execute(
            insert(t.invoices).values(
                invoice_id=invoice_id,
                invoice_number=number,
                reference_number=issued.reference_number,
                payer_id=payer_id,
                billing_period=month_key,
                invoice_date=run_date,
                due_date=issued.due_date,
                total_net=totals.total_net,
                total_vat=totals.total_vat,
                total_gross=totals.total_gross,
                status="issued",
                run_id=run_id,
                document=issued.model_dump(mode="json"),
                created_at=clock.now(),
            )
        )
        await enqueue(session, t.runtime_tables.outbox, [outgoing(issued)], clock)
    log.info(
        "invoice_issued",
        invoice_id=invoice_id,
        payer_id=payer_id,
        month=month_key,
        total=str(totals.total_gross),
    )
    return "issued"
