"""Receivables' HTTP API: credit notes, refunds (B-06) and due-date moves (B-23). Typed requests and
responses; thin routes, one use case or one read each."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from billing_contracts.base import INT32_MAX, Date, Money, Quantity, Timestamp
from billing_contracts.contracts import Requester
from billing_contracts.invoicing import CreditNoteIssuedV1
from invoicing.receivables.repository import ReceivablesRepository
from invoicing.receivables.service import (
    CreditRefusedError,
    CreditRequest,
    DueDateChange,
    DueDateRefusedError,
    InvoiceNotFoundError,
    RefundNotOpenError,
    change_due_date,
    issue_credit_note,
    mark_refund_paid,
)
from service_runtime.auth import Caller, authenticated
from service_runtime.host import ServiceHost


class CreditLineRequest(BaseModel):
    line_no: int = Field(ge=1, le=INT32_MAX, description="Line of the invoice to credit.")
    quantity: Quantity | None = Field(default=None, description="How much of it; default: all that is left.")


class CreditNoteRequest(BaseModel):
    reason: str = Field(
        min_length=1, max_length=500, description="Why the invoice is credited (on the note)."
    )
    lines: list[CreditLineRequest] | None = Field(
        default=None, description="Lines to credit; omitted: the whole invoice (what is left of it)."
    )
    request_id: str | None = Field(
        default=None,
        max_length=100,
        description="Idempotency key: a retry with the same key gets the same note.",
    )


class DueDateRequest(BaseModel):
    new_due_date: Date = Field(description="The due date the invoice should have (B-23).")
    reason: str = Field(min_length=1, max_length=500, description="Why it moves (audit).")
    requested_by: Requester = Field(description="Who asked (B-25 decides whether they may).")
    requested_at: Timestamp | None = Field(default=None, description="When the customer asked; default now.")


class DueDateMoved(BaseModel):
    invoice_id: str
    due_date: dt.date = Field(description="The invoice's due date now.")


class RefundView(BaseModel):
    """B-06: money to return to the payer — a payment no open invoice took, or a credit note on an
    invoice already paid. The one refund list: procountor-sync only notes each in Procountor (its
    delivery `refund_note:<refund_id>`)."""

    refund_id: str
    payer_id: str
    payer_business_id: str
    amount: Money
    payment_date: dt.date = Field(description="The payment's date, or the credit note's.")
    payment_event_id: uuid.UUID = Field(
        description="The `PaymentReceivedV1` it came from, or the credit note's `CreditNoteIssuedV1`."
    )
    procountor_payment_id: str | None = Field(description="None for a credit note's refund.")
    procountor_invoice_id: str | None = Field(description="The Procountor invoice its note is written on.")
    reason: str = Field(description="`no open invoice`, an overpayment, or a credit note on a paid invoice.")
    credit_note_id: str | None = Field(description="The credit note it returns, if any.")
    status: str = Field(description="`to_refund` until paid back, then `paid_back`.")
    created_at: dt.datetime
    paid_at: dt.datetime | None = Field(description="When it was marked paid back.")
    paid_by: str | None = Field(description="Who marked it paid back: the caller's token subject.")
    paid_note: str | None = Field(description="What they noted, e.g. the bank transfer's archive id.")


class RefundPaid(BaseModel):
    """Finance returned the money."""

    note: str = Field(default="", max_length=500, description="e.g. the bank transfer's archive id.")


class DueDateChangeView(BaseModel):
    """One audited due-date change request (B-23), accepted or refused."""

    id: int
    invoice_id: str
    old_due_date: dt.date | None
    new_due_date: dt.date
    outcome: str = Field(description="`accepted` or `refused`.")
    reason: str = Field(description="The requester's reason.")
    refusal: str | None = Field(description="Why it was refused, with the rule id.")
    changed_by: str = Field(
        description="Who moved it: the operator's token subject (http), or the support user the command names (kafka)."
    )
    requested_by: Requester
    requested_at: dt.datetime
    recorded_at: dt.datetime
    source: str = Field(description="`http` or `kafka`.")
    event_id: uuid.UUID | None = Field(
        description="The command's event id, for a change that came over Kafka."
    )


def build_receivables_router(host: ServiceHost) -> APIRouter:
    """Credit notes, refunds and due dates of issued invoices."""
    router = APIRouter()

    @router.post("/invoices/{invoice_id}/credit-notes", status_code=201, tags=["credit notes"])
    async def credit(
        invoice_id: str, body: CreditNoteRequest, caller: Annotated[Caller, authenticated]
    ) -> CreditNoteIssuedV1:
        """Credit an issued invoice in full or by line, with a reason; published like an invoice.

        The operator crediting it is the caller (the token's subject), in the audit as `created_by`."""
        request = CreditRequest(
            invoice_id=invoice_id,
            reason=body.reason,
            credited_by=caller.subject,
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
        return note

    @router.get("/credit-notes", tags=["credit notes"])
    async def list_credit_notes(
        invoice_id: str | None = None, payer_id: str | None = None
    ) -> list[CreditNoteIssuedV1]:
        async with host.sessions() as session:
            return await ReceivablesRepository(session).credit_notes(invoice_id=invoice_id, payer_id=payer_id)

    @router.get("/credit-notes/{credit_note_id}", tags=["credit notes"])
    async def get_credit_note(credit_note_id: str) -> CreditNoteIssuedV1:
        async with host.sessions() as session:
            note = await ReceivablesRepository(session).credit_note(credit_note_id)
        if note is None:
            raise HTTPException(status_code=404, detail=f"no credit note {credit_note_id}")
        return note

    @router.get("/refunds", tags=["refunds"])
    async def list_refunds(payer_id: str | None = None, status: str | None = None) -> list[RefundView]:
        """B-06: finance's one refund list — money to return to payers, oldest first (`status`:
        `to_refund` or `paid_back`)."""
        async with host.sessions() as session:
            rows = await ReceivablesRepository(session).refunds(payer_id, status)
        return [RefundView.model_validate(r, from_attributes=True) for r in rows]

    @router.post("/refunds/{refund_id}/paid", tags=["refunds"])
    async def refund_paid(
        refund_id: str, body: RefundPaid, caller: Annotated[Caller, authenticated]
    ) -> RefundView:
        """B-06: finance paid the refund back. Once (409 after), attributed to the caller's token."""
        try:
            async with host.sessions.begin() as session:
                refund = await mark_refund_paid(
                    session, refund_id, paid_by=caller.subject, note=body.note, clock=host.clock
                )
        except RefundNotOpenError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        return RefundView.model_validate(refund, from_attributes=True)

    @router.post("/invoices/{invoice_id}/due-date", tags=["invoices"])
    async def move_due_date(
        invoice_id: str, body: DueDateRequest, caller: Annotated[Caller, authenticated]
    ) -> DueDateMoved:
        """B-23: support moves one invoice's due date; audited (who asked, who changed it: the caller, when, why)."""
        change = DueDateChange(
            invoice_id=invoice_id,
            new_due_date=body.new_due_date,
            reason=body.reason,
            changed_by=caller.subject,
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
        return DueDateMoved(invoice_id=invoice_id, due_date=due)

    @router.get("/invoices/{invoice_id}/due-date-changes", tags=["invoices"])
    async def due_date_changes(invoice_id: str) -> list[DueDateChangeView]:
        async with host.sessions() as session:
            rows = await ReceivablesRepository(session).due_date_changes(invoice_id)
        return [DueDateChangeView.model_validate(r, from_attributes=True) for r in rows]

    return router
