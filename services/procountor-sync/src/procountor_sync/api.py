"""Procountor-sync's HTTP API: deliveries, mismatches, dunning, transfer files, webhooks, key login.

Refunds are invoicing's one list (B-06); a refund's note in Procountor is its delivery `refund_note:<id>`."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from billing_contracts.invoicing import InvoiceIssuedV1
from procountor_sync import domain, transfer_files
from procountor_sync.keylogin import ApiKeys, KeyLoginError
from procountor_sync.procountor_client import ProcountorClient, ProcountorError
from procountor_sync.records import Delivery
from procountor_sync.repository import (
    DeliveryRepository,
    HourEntryRepository,
    MismatchRepository,
    ProcountorInvoiceRepository,
)
from procountor_sync.service import ProcountorSync, WebhookRefusedError
from service_runtime.auth import Caller, authenticated
from service_runtime.host import ServiceHost

#: How long `GET /procountor/connection` waits for Procountor's answer.
CONNECTION_CHECK_SECONDS = 5.0
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class DeliveryView(BaseModel):
    """One thing handed over to Procountor, and where it is."""

    delivery_id: str = Field(description="`<kind>:<subject id>`, e.g. `invoice:INV-100001`.")
    kind: str = Field(description="invoice, credit_note, due_date or refund_note.")
    invoice_id: str | None = Field(description="Our invoice or credit note.")
    invoice_number: str | None
    payer_business_id: str | None
    status: str = Field(description="pending, awaiting_approval, delivered, refused, cancelled or file.")
    attempts: int
    next_attempt_at: dt.datetime = Field(description="When a pending delivery is tried next.")
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    hold_reason: str | None = Field(description="Why it waits for finance's approval in Procountor.")
    procountor_invoice_id: str | None
    procountor_status: str | None
    changed_by: str | None = Field(description="Operator of the last requeue or cancel.")
    updated_at: dt.datetime


class DeliveryCount(BaseModel):
    """How many deliveries of a kind are in a status."""

    kind: str
    status: str
    count: int


class DeliverySummary(BaseModel):
    """Counts per kind and status, and how many pending ones are failing (the metric's figure)."""

    counts: list[DeliveryCount]
    failing: int


class CancelRequest(BaseModel):
    """Why an operator gives up a delivery (audited; published with `InvoiceDeliveryFailedV1`)."""

    reason: str | None = Field(default=None, min_length=1, max_length=500, description="Why (optional).")


class RequeueRequest(BaseModel):
    """Why an operator has a delivery tried again (audited)."""

    reason: str | None = Field(default=None, min_length=1, max_length=500, description="Why (optional).")


class DeliveryActionView(BaseModel):
    """One operator's requeue or cancel of a delivery: who, when, why (issue 12)."""

    id: int
    delivery_id: str
    action: str = Field(description="requeue or cancel.")
    actor: str = Field(description="Who: the subject of the operator's token, never a name typed in.")
    reason: str | None = Field(description="Why, as the operator gave it.")
    status_after: str = Field(description="The delivery's status right after it.")
    at: dt.datetime


class TotalsView(BaseModel):
    """Net, VAT and gross."""

    net: Decimal
    vat: Decimal
    gross: Decimal


class MismatchView(BaseModel):
    """An invoice whose totals Procountor computed otherwise (I-01); it waits for finance."""

    invoice_id: str
    invoice_number: str
    procountor_invoice_id: str
    ours: TotalsView
    procountor: TotalsView
    detected_at: dt.datetime


class OverdueInvoice(BaseModel):
    """An invoice past its due date with money open (I-03, dunning)."""

    invoice_id: str
    invoice_number: str
    procountor_invoice_id: str
    due_date: dt.date
    days_overdue: int
    total: Decimal
    open_amount: Decimal
    payment_status: str


class OverduePayer(BaseModel):
    """One payer's overdue invoices, oldest first."""

    payer_business_id: str
    payer_name: str
    open_total: Decimal
    invoices: list[OverdueInvoice]


class WebhookAnswer(BaseModel):
    """What became of a webhook request."""

    outcome: str = Field(description="accepted or ignored (an event we do not use).")


class KeyLoginResult(BaseModel):
    """The API key was fetched and stored encrypted; it is never shown."""

    stored: bool
    started_by: str


class ConnectionView(BaseModel):
    """Whether procountor-sync holds an API key and Procountor accepts it (I-06); never the key itself."""

    api_key: str = Field(description="`configured`, `key_login` (stored by the key login) or `none`.")
    key_stored_by: str | None = Field(description="The operator whose key login stored it.")
    key_stored_at: dt.datetime | None
    connected: bool = Field(description="Procountor answered an authenticated call (`GET /sessioninfo`).")
    procountor_user_id: int | None = Field(description="The Procountor user the key belongs to.")
    company_name: str | None
    error: str | None = Field(description="Why not connected, if not.")


def _delivery(row: Delivery) -> DeliveryView:
    return DeliveryView.model_validate(row, from_attributes=True)


def _period(period: str) -> tuple[dt.date, dt.date]:
    if not PERIOD.match(period):
        raise HTTPException(status_code=422, detail="period must be YYYY-MM")
    year, month = (int(p) for p in period.split("-"))
    first = dt.date(year, month, 1)
    last = (dt.date(year + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)
    return first, last


def build_router(
    host: ServiceHost,
    sync: ProcountorSync,
    keys: ApiKeys,
    client: ProcountorClient,
    *,
    login_url: str,
    client_id: str,
    redirect_uri: str,
    seller_iban: str,
    salary_type_code: str,
) -> APIRouter:
    router = APIRouter()

    # --- deliveries (issue 11: never stranded) ---

    @router.get("/deliveries", tags=["deliveries"], summary="Deliveries, by status and kind.")
    async def list_deliveries(
        status: str | None = None,
        kind: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
        after: str | None = Query(
            default=None, description="Keyset: the last delivery_id of the previous page."
        ),
    ) -> list[DeliveryView]:
        async with host.sessions() as session:
            rows = await DeliveryRepository(session).listing(
                status=status, kind=kind, limit=limit, after=after
            )
        return [_delivery(r) for r in rows]

    @router.get("/deliveries/summary", tags=["deliveries"], summary="Counts per kind and status.")
    async def summary() -> DeliverySummary:
        async with host.sessions() as session:
            repo = DeliveryRepository(session)
            counts = await repo.counts()
            failing = await repo.failing()
        return DeliverySummary(
            counts=[DeliveryCount(kind=k, status=s, count=n) for (k, s), n in sorted(counts.items())],
            failing=failing,
        )

    def _id(delivery_id: str) -> str:
        return delivery_id if ":" in delivery_id else f"invoice:{delivery_id}"

    @router.get(
        "/deliveries/{delivery_id}", tags=["deliveries"], summary="One delivery (an invoice id is enough)."
    )
    async def get_delivery(delivery_id: str) -> DeliveryView:
        async with host.sessions() as session:
            row = await DeliveryRepository(session).get(_id(delivery_id))
        if row is None:
            raise HTTPException(status_code=404, detail=f"no delivery {delivery_id}")
        return _delivery(row)

    @router.get(
        "/deliveries/{delivery_id}/actions",
        tags=["deliveries"],
        summary="Every requeue and cancel of a delivery, oldest first: who, when, why.",
    )
    async def delivery_actions(delivery_id: str) -> list[DeliveryActionView]:
        async with host.sessions() as session:
            repo = DeliveryRepository(session)
            if await repo.get(_id(delivery_id)) is None:
                raise HTTPException(status_code=404, detail=f"no delivery {delivery_id}")
            rows = await repo.actions(_id(delivery_id))
        return [DeliveryActionView.model_validate(r, from_attributes=True) for r in rows]

    @router.post("/deliveries/{delivery_id}/requeue", tags=["deliveries"], summary="Try again now.")
    async def requeue(
        delivery_id: str, caller: Annotated[Caller, authenticated], body: RequeueRequest | None = None
    ) -> DeliveryView:
        """Audited: the caller (token subject), the time and the optional reason join the delivery's actions."""
        reason = None if body is None else body.reason
        row = await sync.requeue(_id(delivery_id), by=caller.subject, reason=reason)
        if row is None:
            raise HTTPException(
                status_code=409, detail=f"delivery {delivery_id} is unknown or already delivered"
            )
        return _delivery(row)

    @router.post("/deliveries/{delivery_id}/cancel", tags=["deliveries"], summary="Give a delivery up.")
    async def cancel(
        delivery_id: str, caller: Annotated[Caller, authenticated], body: CancelRequest | None = None
    ) -> DeliveryView:
        """Audited like a requeue; the reason also goes out with `InvoiceDeliveryFailedV1`."""
        reason = None if body is None else body.reason
        row = await sync.cancel(_id(delivery_id), by=caller.subject, reason=reason)
        if row is None:
            raise HTTPException(
                status_code=409, detail=f"delivery {delivery_id} is unknown, delivered or cancelled"
            )
        return _delivery(row)

    @router.get(
        "/mismatches", tags=["deliveries"], summary="Invoices whose totals Procountor computed otherwise."
    )
    async def mismatches() -> list[MismatchView]:
        async with host.sessions() as session:
            rows = await MismatchRepository(session).listing()
        return [MismatchView.model_validate(r, from_attributes=True) for r in rows]

    # --- money back (I-03, B-06) ---

    @router.get("/overdue", tags=["payments"], summary="Overdue invoices per payer, for dunning (I-03).")
    async def overdue(as_of: dt.date | None = None, payer: str | None = None) -> list[OverduePayer]:
        day = as_of or sync.today()
        async with host.sessions() as session:
            rows = await ProcountorInvoiceRepository(session).overdue(as_of=day, payer_business_id=payer)
        payers: dict[str, OverduePayer] = {}
        for r in rows:
            entry = payers.setdefault(
                r.payer_business_id,
                OverduePayer(
                    payer_business_id=r.payer_business_id,
                    payer_name=r.payer_name,
                    open_total=Decimal(0),
                    invoices=[],
                ),
            )
            open_amount = Decimal(r.total_gross) - Decimal(r.settled)
            entry.invoices.append(
                OverdueInvoice(
                    invoice_id=r.invoice_id,
                    invoice_number=r.invoice_number,
                    procountor_invoice_id=r.procountor_invoice_id,
                    due_date=r.due_date,
                    days_overdue=domain.overdue_days(r.due_date, day),
                    total=r.total_gross,
                    open_amount=open_amount,
                    payment_status=r.payment_status,
                )
            )
            entry.open_total += open_amount
        return list(payers.values())

    @router.post(
        "/webhooks/procountor",
        tags=["webhooks"],
        summary="Procountor's webhooks; authenticated by their HMAC signature only.",
        responses={
            401: {"description": "forged, unsigned or outside the replay window"},
            409: {"description": "replayed"},
        },
    )
    async def procountor_webhook(request: Request) -> WebhookAnswer:
        body = await request.body()
        try:
            outcome = await sync.receive_webhook(headers=request.headers, body=body)
        except WebhookRefusedError as exc:
            raise HTTPException(
                status_code=409 if str(exc) == "replay" else 401, detail=f"webhook refused: {exc}"
            ) from None
        return WebhookAnswer(outcome=outcome)

    # --- transfer files (I-04, I-05) ---

    @router.get(
        "/transfer-files/invoices",
        tags=["transfer files"],
        summary="Invoices of a billing period as Procountor's invoice import file (I-05).",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def invoice_file(
        period: str,
        all_payers: bool = Query(default=False, description="Everyone, not only the file payers."),
    ) -> Response:
        _period(period)
        async with host.sessions() as session:
            rows = await DeliveryRepository(session).listing(
                status=None, kind="invoice", limit=1_000_000, after=None
            )
        invoices = [
            InvoiceIssuedV1.model_validate(r.payload)
            for r in rows
            if r.payload.get("billing_period") == period and (all_payers or r.status == "file")
        ]
        invoices.sort(key=lambda i: (len(i.invoice_number), i.invoice_number))
        content = transfer_files.invoice_import_file(invoices, seller_iban=seller_iban)
        return Response(
            content,
            media_type="text/csv; charset=windows-1252",
            headers={"Content-Disposition": f'attachment; filename="invoices-{period}.csv"'},
        )

    @router.get(
        "/transfer-files/payroll",
        tags=["transfer files"],
        summary="Hour entries of a month as Procountor's salary data import file (I-04).",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def payroll_file(period: str) -> Response:
        first, last = _period(period)
        async with host.sessions() as session:
            rows = await HourEntryRepository(session).of_month(first, last)
        entries = [
            transfer_files.HourEntry(
                r.entry_id, r.employee_id, r.work_date, Decimal(r.hours), r.service_product_code
            )
            for r in rows
        ]
        content = transfer_files.payroll_import_file(entries, salary_type_code=salary_type_code)
        return Response(
            content,
            media_type="text/csv; charset=windows-1252",
            headers={"Content-Disposition": f'attachment; filename="payroll-{period}.csv"'},
        )

    # --- key login (I-06) ---

    @router.get(
        "/procountor/key-login",
        tags=["authentication"],
        summary="Start: to Procountor's key-login page.",
        response_class=RedirectResponse,
        status_code=307,
    )
    async def key_login(caller: Annotated[Caller, authenticated]) -> RedirectResponse:
        try:
            url = await keys.start_login(
                login_url=login_url, client_id=client_id, redirect_uri=redirect_uri, by=caller.subject
            )
        except KeyLoginError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return RedirectResponse(url, status_code=307)

    @router.get(
        "/procountor/connection",
        tags=["authentication"],
        summary="Does procountor-sync hold an API key Procountor accepts? (an authenticated call)",
    )
    async def connection() -> ConnectionView:
        source, stored_by, stored_at = await keys.source()
        info: dict[str, Any] = {}
        error: str | None = None
        try:
            # A status check answers promptly: never the delivery path's retries and backoff in full.
            async with asyncio.timeout(CONNECTION_CHECK_SECONDS):
                info = await client.session_info()
        except KeyLoginError as exc:
            error = str(exc)
        except ProcountorError as exc:
            error = f"Procountor answered {exc.status}"
        except TimeoutError:
            error = f"Procountor did not answer within {CONNECTION_CHECK_SECONDS:g} s"
        user_id = info.get("userId")
        return ConnectionView(
            api_key=source,
            key_stored_by=stored_by,
            key_stored_at=stored_at,
            connected=error is None,
            procountor_user_id=user_id if isinstance(user_id, int) else None,
            company_name=info.get("name"),
            error=error,
        )

    @router.get(
        "/procountor/key-login/callback",
        tags=["authentication"],
        summary="Procountor sends the user back here.",
    )
    async def key_login_callback(code: str, state: str) -> KeyLoginResult:
        try:
            started_by = await keys.finish_login(state)
            api_key = await client.exchange_login_code(code, redirect_uri)
            await keys.store(api_key, by=started_by)
        except KeyLoginError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except ProcountorError as exc:
            raise HTTPException(
                status_code=502, detail=f"Procountor refused the code: {exc.status}"
            ) from None
        return KeyLoginResult(stored=True, started_by=started_by)

    return router
