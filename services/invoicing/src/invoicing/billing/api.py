"""Billing's HTTP API: billing runs, invoices and their specification, held amounts. Every request and
response is a typed model (the OpenAPI shows operators what they send and get); the routes are thin:
one use case or one read each (credit notes, refunds, due dates: `receivables.api`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from billing_contracts.base import INT64_MAX, Date, Money, Quantity
from billing_contracts.invoicing import InvoiceIssuedV1, InvoiceLine, VatTotal
from billing_contracts.procountor import ProcountorPaymentStatus
from invoicing.billing.domain import InvoiceStatus
from invoicing.billing.service import (
    AdvanceBillingError,
    MonthNotClosedError,
    NotABillingDayError,
    RunReport,
    preview_billing,
    run_billing,
)
from invoicing.billing.specification import (
    ItemSource,
    MeteringItemsClient,
    MeteringUnavailableError,
    specification,
)
from invoicing.billing.views import (
    billing_run_status,
    held_of_payer,
    held_totals,
    invoice_document,
    invoice_view,
    list_invoice_views,
    planned_view,
)
from invoicing.calendar import YearMonth, is_business_day, run_day
from invoicing.prices.domain import PriceBook
from invoicing.prices.service import price_book_for_billing
from invoicing.prices.vat import VatRateTable
from service_runtime.host import ServiceHost

_PERIOD = r"^20\d{2}-(0[1-9]|1[0-2])$"
Period = Annotated[str, Query(pattern=_PERIOD, description="Billing period YYYY-MM.")]
PeriodPath = Annotated[str, Path(pattern=_PERIOD, description="Billing period YYYY-MM.")]


class BillingRunRequest(BaseModel):
    run_date: Date = Field(
        description=(
            "The invoice date. The run bills the month before it (B-04); it may not be before that "
            "month's first Finnish business day (B-03) nor after today (nothing in advance)."
        )
    )


class ScheduledRunRequest(BaseModel):
    today: Date = Field(description="Today's date in Helsinki, as the CronJob sees it.")


class PayerFailure(BaseModel):
    payer_id: str = Field(description="The payer set aside; a rerun bills it once the cause is fixed.")
    reason: str = Field(description="The error's first line, without SQL or parameters.")


class RunTotals(BaseModel):
    issued: int = Field(description="Payers invoiced.")
    held: int = Field(description="Payers whose lines are held under the minimum invoice (B-15).")
    zero: int = Field(description="Payers whose lines netted to zero.")
    nothing_to_bill: int = Field(description="Payers with nothing to bill this period.")
    failed: int = Field(description="Payers set aside, still to bill.")


class BillingRunView(BaseModel):
    run_id: str = Field(description="`run-YYYY-MM`: one run per billing period; every attempt updates it.")
    run_date: dt.date
    billing_month: str
    attempt: int = Field(description="Which attempt of this period's run this call was.")
    payers: int = Field(description="Payers this call billed or tried to (not decided before).")
    invoices_issued: int = Field(description="Invoices issued by this call.")
    held: int = Field(description="Payers whose lines this call held under the minimum invoice (B-15).")
    zero: int = Field(description="Payers whose lines netted to zero: recorded, nothing sent.")
    nothing_to_bill: int
    already_billed: int = Field(
        description="Payers decided by an earlier or concurrent run (never billed twice)."
    )
    failures: list[PayerFailure] = Field(description="Payers this call set aside, with the reason.")
    status: str = Field(description="`completed`, or `completed_with_failures` while any payer is set aside.")
    totals: RunTotals = Field(description="The period's outcomes so far, all attempts together.")
    plan_seconds: float = Field(description="Time spent reading the month before billing the first payer.")


class NotABillingDayView(BaseModel):
    status: Literal["not_a_billing_day"] = Field(description="Nothing ran: not a billing day (B-03).")
    today: dt.date = Field(description="The day the CronJob asked for.")
    run_day: dt.date = Field(description="The first Finnish business day of that month.")


class PlannedPayerView(BaseModel):
    payer_id: str
    payer_name: str | None = Field(description="Name on the invoice; none for a payer without a contract.")
    action: str = Field(description="`issue`, `hold`, `zero` or `nothing` (B-15).")
    reason: str | None = Field(description="Why a minimum-invoice decision went that way (B-15).")
    final_invoice: bool = Field(description="The contract's last invoice: always sent (B-15, B-27).")
    invoice_date: dt.date
    due_date: dt.date = Field(description="Invoice date + the price list's payment term (B-05).")
    lines: list[InvoiceLine] = Field(description="The lines the decision covers, numbered as on the invoice.")
    vat_totals: list[VatTotal]
    total_net: Money
    total_vat: Money
    total_gross: Money
    accumulated_held_net: Money = Field(description="What stays held for the payer after this decision.")


class DryRunView(BaseModel):
    billing_month: str = Field(description="The month the run would bill, YYYY-MM.")
    run_date: dt.date
    month_closed: bool = Field(description="Whether metering has closed the month (else: the usage so far).")
    payers: list[PlannedPayerView]
    failures: list[PayerFailure]


class RunProgress(BaseModel):
    payers: int = Field(description="Payers planned by the attempts so far.")
    done: int = Field(description="Of which billed or set aside.")


class RunOutcomes(BaseModel):
    issued: int
    held: int
    zero: int
    nothing_to_bill: int


class RunFailureView(BaseModel):
    payer_id: str
    reason: str
    attempts: int = Field(description="How many attempts failed for this payer.")
    failed_at: dt.datetime


class BillingRunStatusView(BaseModel):
    run_id: str
    billing_month: str
    status: str = Field(description="`running`, `completed` or `completed_with_failures`.")
    first_run_date: dt.date
    last_run_date: dt.date | None
    attempts: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    progress: RunProgress
    outcomes: RunOutcomes = Field(description="The period's decisions so far.")
    failures: list[RunFailureView] = Field(description="Payers still set aside, with the reason.")


#: procountor-sync's delivery reports as invoicing keeps them (`receivables.domain.DeliveryStatus`).
DeliveryState = Literal["awaiting_approval", "sent", "failed_retrying", "failed"]


class InvoiceView(InvoiceIssuedV1):
    """An issued invoice: the document as published, and where it stands now."""

    status: InvoiceStatus = Field(description="`open`, `paid` or `credited` (in full).")
    paid_amount: Money = Field(description="Payments applied to it (B-06).")
    credited_net: Money = Field(description="Net credited by credit notes.")
    credited_gross: Money = Field(description="Gross credited by credit notes.")
    open_amount: Money = Field(description="What the payer still owes on it.")
    delivery_status: DeliveryState | None = Field(
        description="procountor-sync's delivery (I-01): `awaiting_approval`, `sent`, `failed_retrying` or "
        "`failed`; none before its first report. Only delivery reports change it."
    )
    delivery_error: str | None = Field(description="Why the last delivery failed, if it did.")
    delivery_status_at: dt.datetime | None = Field(
        description="The time of the delivery report behind `delivery_status` (an older one never replaces it)."
    )
    payment_status: ProcountorPaymentStatus | None = Field(
        description="Procountor's payment state (I-03): `open`, `partly_paid`, `paid` or `invalidated`; none "
        "before its first report. Only payment reports change it; `status` is invoicing's own (B-06)."
    )
    procountor_paid_amount: Money | None = Field(
        description="Settled on it in Procountor (payments and credit offsets), with `payment_status`."
    )
    procountor_open_amount: Money | None = Field(description="Open in Procountor, with `payment_status`.")
    payment_status_at: dt.datetime | None = Field(
        description="The time of the payment report behind `payment_status`."
    )
    procountor_invoice_id: str | None = Field(description="The invoice's id in Procountor, once delivered.")


ItemValue = str | int | bool | list[str] | None


class SpecificationLineView(BaseModel):
    line_no: int
    environment_id: str
    product_code: str
    description: str
    period: str = Field(description="The month the line bills, YYYY-MM.")
    quantity: Quantity
    net: Money
    is_correction: bool
    carried_from_period: str | None
    item_kind: str | None = Field(description="Which of metering's item lists is behind the line (B-19).")
    items: list[dict[str, ItemValue]] = Field(
        description="Metering's items behind the line, as metering's item API lists them (flat records)."
    )
    basis: str | None = Field(default=None, description="For a line without items: how it was priced.")


class SpecificationView(BaseModel):
    """B-19: every voucher, payee, message, user, signature and hour behind every line."""

    invoice_id: str
    invoice_number: str
    billing_period: str
    payer_id: str
    lines: list[SpecificationLineView]


class HeldBatchView(BaseModel):
    billing_period: str = Field(description="The month whose run held these lines.")
    net: Money
    reason: str = Field(description="Why they were held (B-15).")
    lines: list[InvoiceLine]
    released_in_period: str | None = Field(description="The period whose invoice took them, once released.")
    released_invoice_id: str | None


class PayerHeldView(BaseModel):
    payer_id: str
    held_net: Money = Field(description="The sum still held (not released).")
    held: list[HeldBatchView]


def _view(report: RunReport) -> BillingRunView:
    return BillingRunView.model_validate(report.as_view())


def build_billing_router(
    host: ServiceHost,
    price_book: PriceBook,
    *,
    metering: Callable[[], httpx.AsyncClient] | None = None,
    batch_size: int = 1000,
    workers: int = 2,
    vat_rates: VatRateTable | None = None,
) -> APIRouter:
    """The billing API; `metering` makes a client of metering's API for specifications (B-19)."""
    router = APIRouter()

    async def prices() -> PriceBook:
        # B-07: the price lists loaded into the database (file or API), else the configured book.
        async with host.sessions() as session:
            return await price_book_for_billing(session, price_book)

    @contextlib.asynccontextmanager
    async def items() -> AsyncIterator[ItemSource | None]:
        # B-01: production months are counted from metering's item lists.
        if metering is None:
            yield None
            return
        async with metering() as client:
            yield MeteringItemsClient(client)

    async def _run(run_date: dt.date) -> BillingRunView:
        metrics = host.metrics.billing_run
        started = time.perf_counter()
        outcome = "failed"
        try:
            async with items() as source:
                report = await run_billing(
                    host.sessions,
                    host.clock,
                    await prices(),
                    run_date,
                    batch_size=batch_size,
                    workers=workers,
                    items=source,
                    vat_rates=vat_rates,
                )
            outcome = report.status
        except (NotABillingDayError, AdvanceBillingError) as exc:
            outcome = "refused"
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except MonthNotClosedError as exc:
            outcome = "refused"
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        finally:
            host.relay.wake()
            # A refused request never started a run: only runs that went through payers count.
            if outcome != "refused":
                metrics.runs.labels(outcome=outcome).inc()
                metrics.duration.observe(time.perf_counter() - started)
        return _view(report)

    @router.post("/billing-runs", response_model=BillingRunView, tags=["billing runs"])
    async def trigger_run(body: BillingRunRequest) -> BillingRunView:
        """Run (or rerun) the billing of the month before `run_date`; idempotent and safe to run concurrently.

        409 while metering has not closed the month (an open month is never billed).
        """
        return await _run(body.run_date)

    @router.post("/billing-runs/scheduled", tags=["billing runs"])
    async def scheduled_run(body: ScheduledRunRequest) -> BillingRunView | NotABillingDayView:
        """Called daily by the CronJob (B-03).

        Before the first Finnish business day of the month, and on any day that is not a business
        day, nothing happens. From the first business day on, every business day runs the billing
        of the month before, which is a cheap no-op once every payer is decided: a run missed or
        interrupted on the first business day is caught up the next business day. 409 while
        metering has not closed the month; the CronJob's command waits and asks again.
        """
        first = run_day(YearMonth.of(body.today))
        if body.today < first or not is_business_day(body.today):
            return NotABillingDayView(status="not_a_billing_day", today=body.today, run_day=first)
        return await _run(body.today)

    @router.post("/billing-runs/dry-run", tags=["billing runs"])
    async def dry_run(body: BillingRunRequest) -> DryRunView:
        """What a run on `run_date` would do now, without writing anything or taking invoice numbers.

        Works for an open month too (with the usage received so far): `month_closed` says which.
        """
        try:
            book = await prices()
            async with items() as source:
                month, closed, planned, failures = await preview_billing(
                    host.sessions, host.clock, book, body.run_date, items=source, vat_rates=vat_rates
                )
        except NotABillingDayError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return DryRunView.model_validate(
            {
                "billing_month": str(month),
                "run_date": body.run_date,
                "month_closed": closed,
                "payers": [planned_view(p, run_date=body.run_date, price_book=book) for p in planned],
                "failures": [{"payer_id": p, "reason": r} for p, r in sorted(failures.items())],
            }
        )

    @router.get("/billing-runs/{period}", tags=["billing runs"])
    async def run_status(period: PeriodPath) -> BillingRunStatusView:
        """Progress, counts and the payers set aside (with the reason) of one billing period's run."""
        async with host.sessions() as session:
            status = await billing_run_status(session, YearMonth.parse(period))
        if status is None:
            raise HTTPException(status_code=404, detail=f"no billing run for {period}")
        return BillingRunStatusView.model_validate(status)

    @router.get("/invoices", tags=["invoices"])
    async def list_invoices(
        payer_id: str | None = None,
        period: Annotated[str | None, Period] = None,
        status: InvoiceStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after_number: Annotated[
            int | None, Query(ge=0, le=INT64_MAX, description="Keyset paging: the last invoice number seen.")
        ] = None,
    ) -> list[InvoiceView]:
        """Invoices by payer, billing period and status, in invoice-number order."""
        async with host.sessions() as session:
            views = await list_invoice_views(
                session,
                payer_id=payer_id,
                period=period,
                status=status,
                limit=limit,
                after_number=after_number,
            )
        return [InvoiceView.model_validate(v) for v in views]

    @router.get("/invoices/{invoice_id}", tags=["invoices"])
    async def get_invoice(invoice_id: str) -> InvoiceView:
        async with host.sessions() as session:
            view = await invoice_view(session, invoice_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no invoice {invoice_id}")
        return InvoiceView.model_validate(view)

    @router.get("/invoices/{invoice_id}/specification", tags=["invoices"])
    async def get_specification(invoice_id: str) -> SpecificationView:
        """B-19: every voucher, payee, message, user, signature and hour behind every line."""
        async with host.sessions() as session:
            document = await invoice_document(session, invoice_id)
        if document is None:
            raise HTTPException(status_code=404, detail=f"no invoice {invoice_id}")
        if metering is None:
            raise HTTPException(
                status_code=503, detail="INVOICING_METERING_URL is not set: no item lists to read"
            )
        try:
            async with metering() as client:
                found = await specification(document, MeteringItemsClient(client))
                return SpecificationView.model_validate(found)
        except MeteringUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    @router.get("/held", tags=["invoices"])
    async def all_held() -> dict[str, str]:
        """B-15: every payer with lines held under the minimum invoice, and the net held."""
        async with host.sessions() as session:
            return await held_totals(session)

    @router.get("/payers/{payer_id}/held", tags=["invoices"])
    async def held(payer_id: str) -> PayerHeldView:
        """B-15: what is held for the payer under the minimum invoice, by the run that held it."""
        async with host.sessions() as session:
            return PayerHeldView.model_validate(await held_of_payer(session, payer_id))

    return router
