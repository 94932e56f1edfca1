"""Invoicing's HTTP API: billing runs, invoices (contracts and price lists: contracts_api)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from invoicing import tables as t
from invoicing.pricing import PriceBook
from invoicing.service import (
    MonthNotClosedError,
    NotABillingDayError,
    RunReport,
    run_billing,
)
from service_runtime.host import ServiceHost


class BillingRunRequest(BaseModel):
    run_date: dt.date = Field(description="The run day: the first Finnish business day of a month (B-03).")


class ScheduledRunRequest(BaseModel):
    today: dt.date = Field(
        description="Today's date in Helsinki; the run happens only on the first business day."
    )


class BillingRunView(BaseModel):
    run_id: str
    run_date: dt.date
    billing_month: str
    payers: int
    invoices_issued: int = Field(description="Invoices issued by this call.")
    already_billed: int = Field(
        description="Payers already invoiced for the month (reruns never double bill)."
    )
    failures: list[dict[str, str]] = Field(description="Payers set aside, with the reason.")


def _view(report: RunReport) -> BillingRunView:
    return BillingRunView(**report.__dict__)


def build_router(host: ServiceHost, price_book: PriceBook) -> APIRouter:
    router = APIRouter()

    async def _run(run_date: dt.date) -> BillingRunView:
        try:
            report = await run_billing(host.sessions, host.clock, price_book, run_date)
        except NotABillingDayError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        except MonthNotClosedError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        host.relay.wake()
        return _view(report)

    @router.post("/billing-runs", response_model=BillingRunView, tags=["billing runs"])
    async def trigger_run(body: BillingRunRequest) -> BillingRunView:
        """Run (or rerun) the billing of the month before `run_date`; idempotent."""
        return await _run(body.run_date)

    @router.post("/billing-runs/scheduled", tags=["billing runs"])
    async def scheduled_run(body: ScheduledRunRequest) -> dict[str, Any]:
        """Called daily by the CronJob: runs only on the first Finnish business day (B-03)."""
        try:
            return (await _run(body.today)).model_dump(mode="json")
        except HTTPException as exc:
            if exc.status_code == 422:
                return {"status": "not_a_billing_day", "today": body.today.isoformat()}
            raise

    @router.get("/invoices", tags=["invoices"])
    async def list_invoices(
        payer_id: str | None = None, period: str | None = Query(default=None, pattern=r"^\d{4}-\d{2}$")
    ) -> list[dict[str, Any]]:
        query = select(t.invoices.c.document).order_by(t.invoices.c.invoice_number)
        if payer_id:
            query = query.where(t.invoices.c.payer_id == payer_id)
        if period:
            query = query.where(t.invoices.c.billing_period == period)
        async with host.sessions() as session:
            return list((await session.execute(query)).scalars())

    @router.get("/invoices/{invoice_id}", tags=["invoices"])
    async def get_invoice(invoice_id: str) -> dict[str, Any]:
        async with host.sessions() as session:
            doc = await session.scalar(
                select(t.invoices.c.document).where(t.invoices.c.invoice_id == invoice_id)
            )
        if doc is None:
            raise HTTPException(status_code=404, detail=f"no invoice {invoice_id}")
        result: dict[str, Any] = doc
        return result

    return router
