"""Invoicing's HTTP API: billing runs, invoices and their specification, held amounts, credit notes, refunds,
due dates (contracts and price lists: contracts_api)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from billing_contracts.base import Quantity
from billing_contracts.contracts import Requester
from billing_contracts.invoicing import InvoiceIssuedV1
from invoicing import tables as t
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
    InvoiceStatus,
    billing_run_status,
    held_of_payer,
    held_totals,
    invoice_view,
    list_invoice_views,
    planned_view,
)
from invoicing.calendar import YearMonth, is_business_day, run_day
from invoicing.prices.domain import PriceBook
from invoicing.prices.repository import price_book_for_billing
from invoicing.receivables.domain import CreditRefusedError
from invoicing.receivables.service import (
    CreditRequest,
    DueDateChange,
    DueDateRefusedError,
    InvoiceNotFoundError,
    change_due_date,
    issue_credit_note,
)
from service_runtime.host import ServiceHost

Period = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="Billing period YYYY-MM.")]


class BillingRunRequest(BaseModel):
    run_date: dt.date = Field(
        description=(
            "The invoice date. The run bills the month before it (B-04); it may not be before that "
            "month's first Finnish business day (B-03) nor after today (nothing in advance)."
        )
    )


class ScheduledRunRequest(BaseModel):
    today: dt.date = Field(description="Today's date in Helsinki, as the CronJob sees it.")


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
    failures: list[dict[str, str]] = Field(description="Payers this call set aside, with the reason.")
    status: str = Field(description="`completed`, or `completed_with_failures` while any payer is set aside.")
    totals: dict[str, int] = Field(description="The period's outcomes so far, all attempts together.")
    plan_seconds: float = Field(description="Time spent reading the month before billing the first payer.")


class CreditLineRequest(BaseModel):
    line_no: int = Field(ge=1, description="Line of the invoice to credit.")
    quantity: Quantity | None = Field(default=None, description="How much of it; default: all that is left.")


class CreditNoteRequest(BaseModel):
    reason: str = Field(
        min_length=1, max_length=500, description="Why the invoice is credited (on the note)."
    )
    credited_by: str = Field(min_length=1, max_length=100, description="The operator crediting it (audit).")
    lines: list[CreditLineRequest] | None = Field(
        default=None, description="Lines to credit; omitted: the whole invoice (what is left of it)."
    )
    request_id: str | None = Field(
        default=None,
        max_length=100,
        description="Idempotency key: a retry with the same key gets the same note.",
    )


class DueDateRequest(BaseModel):
    new_due_date: dt.date = Field(description="The due date the invoice should have (B-23).")
    reason: str = Field(min_length=1, max_length=500, description="Why it moves (audit).")
    changed_by: str = Field(min_length=1, max_length=100, description="The support user making the change.")
    requested_by: Requester = Field(description="Who asked (B-25 decides whether they may).")
    requested_at: dt.datetime | None = Field(
        default=None, description="When the customer asked; default now."
    )


def _view(report: RunReport) -> BillingRunView:
    return BillingRunView(**report.__dict__)


def build_router(
    host: ServiceHost,
    price_book: PriceBook,
    *,
    metering: Callable[[], httpx.AsyncClient] | None = None,
    batch_size: int = 1000,
    workers: int = 2,
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
                )
        except (NotABillingDayError, AdvanceBillingError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except MonthNotClosedError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        finally:
            host.relay.wake()
        return _view(report)

    @router.post("/billing-runs", response_model=BillingRunView, tags=["billing runs"])
    async def trigger_run(body: BillingRunRequest) -> BillingRunView:
        """Run (or rerun) the billing of the month before `run_date`; idempotent and safe to run concurrently.

        409 while metering has not closed the month (an open month is never billed).
        """
        return await _run(body.run_date)

    @router.post("/billing-runs/scheduled", tags=["billing runs"])
    async def scheduled_run(body: ScheduledRunRequest) -> dict[str, Any]:
        """Called daily by the CronJob (B-03).

        Before the first Finnish business day of the month, and on any day that is not a business
        day, nothing happens. From the first business day on, every business day runs the billing
        of the month before, which is a cheap no-op once every payer is decided: a run missed or
        interrupted on the first business day is caught up the next business day. 409 while
        metering has not closed the month; the CronJob's command waits and asks again.
        """
        first = run_day(YearMonth.of(body.today))
        if body.today < first or not is_business_day(body.today):
            return {
                "status": "not_a_billing_day",
                "today": body.today.isoformat(),
                "run_day": first.isoformat(),
            }
        return (await _run(body.today)).model_dump(mode="json")

    @router.post("/billing-runs/dry-run", tags=["billing runs"])
    async def dry_run(body: BillingRunRequest) -> dict[str, Any]:
        """What a run on `run_date` would do now, without writing anything or taking invoice numbers.

        Works for an open month too (with the usage received so far): `month_closed` says which.
        """
        try:
            book = await prices()
            async with items() as source:
                month, closed, planned, failures = await preview_billing(
                    host.sessions, host.clock, book, body.run_date, items=source
                )
        except NotABillingDayError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return {
            "billing_month": str(month),
            "run_date": body.run_date.isoformat(),
            "month_closed": closed,
            "payers": [planned_view(p, run_date=body.run_date, price_book=book) for p in planned],
            "failures": [{"payer_id": p, "reason": r} for p, r in sorted(failures.items())],
        }

    @router.get("/billing-runs/{period}", tags=["billing runs"])
    async def run_status(period: Annotated[str, Period]) -> dict[str, Any]:
        """Progress, counts and the payers set aside (with the reason) of one billing period's run."""
        async with host.sessions() as session:
            status = await billing_run_status(session, YearMonth.parse(period))
        if status is None:
            raise HTTPException(status_code=404, detail=f"no billing run for {period}")
        return status

    @router.get("/invoices", tags=["invoices"])
    async def list_invoices(
        payer_id: str | None = None,
        period: Annotated[str | None, Period] = None,
        status: InvoiceStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after_number: Annotated[
            int | None, Query(description="Keyset paging: the last invoice number seen.")
        ] = None,
    ) -> list[dict[str, Any]]:
        """Invoices by payer, billing period and status, in invoice-number order."""
        async with host.sessions() as session:
            return await list_invoice_views(
                session,
                payer_id=payer_id,
                period=period,
                status=status,
                limit=limit,
                after_number=after_number,
            )

    @router.get("/invoices/{invoice_id}", tags=["invoices"])
    async def get_invoice(invoice_id: str) -> dict[str, Any]:
        async with host.sessions() as session:
            view = await invoice_view(session, invoice_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no invoice {invoice_id}")
        return view

    @router.get("/invoices/{invoice_id}/specification", tags=["invoices"])
    async def get_specification(invoice_id: str) -> dict[str, Any]:
        """B-19: every voucher, payee, message, user, signature and hour behind every line."""
        async with host.sessions() as session:
            document = await session.scalar(
                select(t.invoices.c.document).where(t.invoices.c.invoice_id == invoice_id)
            )
        if document is None:
            raise HTTPException(status_code=404, detail=f"no invoice {invoice_id}")
        if metering is None:
            raise HTTPException(
                status_code=503, detail="INVOICING_METERING_URL is not set: no item lists to read"
            )
        try:
            async with metering() as client:
                return await specification(
                    InvoiceIssuedV1.model_validate(document), MeteringItemsClient(client)
                )
        except MeteringUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc

    @router.post("/invoices/{invoice_id}/credit-notes", status_code=201, tags=["credit notes"])
    async def credit(invoice_id: str, body: CreditNoteRequest) -> dict[str, Any]:
        """Credit an issued invoice in full or by line, with a reason; published like an invoice."""
        request = CreditRequest(
            invoice_id=invoice_id,
            reason=body.reason,
            credited_by=body.credited_by,
            lines=None if body.lines is None else {ln.line_no: ln.quantity for ln in body.lines},
            request_id=body.request_id,
        )
        try:
            async with host.sessions.begin() as session:
                note = await issue_credit_note(session, request, host.clock)
        except InvoiceNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except CreditRefusedError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        host.relay.wake()
        return note.model_dump(mode="json")

    @router.get("/credit-notes", tags=["credit notes"])
    async def list_credit_notes(
        invoice_id: str | None = None, payer_id: str | None = None
    ) -> list[dict[str, Any]]:
        c = t.credit_notes.c
        query = select(c.document).order_by(c.credit_note_number)
        if invoice_id:
            query = query.where(c.invoice_id == invoice_id)
        if payer_id:
            query = query.where(c.payer_id == payer_id)
        async with host.sessions() as session:
            return list((await session.execute(query)).scalars())

    @router.get("/credit-notes/{credit_note_id}", tags=["credit notes"])
    async def get_credit_note(credit_note_id: str) -> dict[str, Any]:
        c = t.credit_notes.c
        async with host.sessions() as session:
            document = await session.scalar(select(c.document).where(c.credit_note_id == credit_note_id))
        if document is None:
            raise HTTPException(status_code=404, detail=f"no credit note {credit_note_id}")
        found: dict[str, Any] = document
        return found

    @router.get("/refunds", tags=["refunds"])
    async def list_refunds(payer_id: str | None = None) -> list[dict[str, Any]]:
        """B-06: payments that found no open invoice, to be returned to the payer."""
        r = t.refunds.c
        query = select(t.refunds).order_by(r.created_at, r.refund_id)
        if payer_id:
            query = query.where(r.payer_id == payer_id)
        async with host.sessions() as session:
            rows = (await session.execute(query)).mappings().all()
        return [
            {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in row.items()} for row in rows
        ]

    @router.post("/invoices/{invoice_id}/due-date", tags=["invoices"])
    async def move_due_date(invoice_id: str, body: DueDateRequest) -> dict[str, Any]:
        """B-23: support moves one invoice's due date; audited (who asked, who changed it, when, why)."""
        change = DueDateChange(
            invoice_id=invoice_id,
            new_due_date=body.new_due_date,
            reason=body.reason,
            changed_by=body.changed_by,
            requested_by=body.requested_by,
            requested_at=body.requested_at or host.clock.now(),
            source="http",
        )
        refusal: DueDateRefusedError | None = None
        try:
            async with host.sessions.begin() as session:
                try:
                    due = await change_due_date(session, change, host.clock)
                except DueDateRefusedError as exc:
                    refusal = exc  # the refusal's audit row commits with this transaction
        except InvoiceNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        if refusal is not None:
            raise HTTPException(status_code=422, detail={"rule": refusal.rule, "reason": refusal.reason})
        return {"invoice_id": invoice_id, "due_date": due.isoformat()}

    @router.get("/invoices/{invoice_id}/due-date-changes", tags=["invoices"])
    async def due_date_changes(invoice_id: str) -> list[dict[str, Any]]:
        d = t.due_date_changes.c
        async with host.sessions() as session:
            rows = (
                await session.execute(
                    select(t.due_date_changes).where(d.invoice_id == invoice_id).order_by(d.id)
                )
            ).mappings()
            return [dict(r) for r in rows]

    @router.get("/held", tags=["invoices"])
    async def all_held() -> dict[str, str]:
        """B-15: every payer with lines held under the minimum invoice, and the net held."""
        async with host.sessions() as session:
            return await held_totals(session)

    @router.get("/payers/{payer_id}/held", tags=["invoices"])
    async def held(payer_id: str) -> dict[str, Any]:
        """B-15: what is held for the payer under the minimum invoice, by the run that held it."""
        async with host.sessions() as session:
            return await held_of_payer(session, payer_id)

    return router
