"""Invoicing's HTTP API: billing runs, invoices, held amounts (contracts and price lists: contracts_api)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from invoicing.billing_run import (
    AdvanceBillingError,
    MonthNotClosedError,
    NotABillingDayError,
    RunReport,
    preview_billing,
    run_billing,
)
from invoicing.calendar import YearMonth, is_business_day, run_day
from invoicing.invoice_views import (
    InvoiceStatus,
    billing_run_status,
    held_of_payer,
    invoice_view,
    list_invoice_views,
    planned_view,
)
from invoicing.pricing import PriceBook
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


def _view(report: RunReport) -> BillingRunView:
    return BillingRunView(**report.__dict__)


def build_router(host: ServiceHost, price_book: PriceBook) -> APIRouter:
    router = APIRouter()

    async def _run(run_date: dt.date) -> BillingRunView:
        try:
            report = await run_billing(host.sessions, host.clock, price_book, run_date)
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
            month, closed, planned, failures = await preview_billing(
                host.sessions, host.clock, price_book, body.run_date
            )
        except NotABillingDayError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return {
            "billing_month": str(month),
            "run_date": body.run_date.isoformat(),
            "month_closed": closed,
            "payers": [planned_view(p, run_date=body.run_date, price_book=price_book) for p in planned],
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

    @router.get("/payers/{payer_id}/held", tags=["invoices"])
    async def held(payer_id: str) -> dict[str, Any]:
        """B-15: what is held for the payer under the minimum invoice, by the run that held it."""
        async with host.sessions() as session:
            return await held_of_payer(session, payer_id)

    return router
