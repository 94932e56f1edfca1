"""Receivables' use cases, after an invoice is issued: credit notes, payments and refunds (B-06),
due-date moves (B-23), delivery state. Each runs in the caller's transaction; the rules are in
`receivables.domain`, the SQL in `receivables.repository`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import structlog

from billing_contracts.contracts import Requester as WireRequester
from billing_contracts.invoicing import (
    CreditNoteIssuedV1,
    CreditNoteLine,
    InvoiceDueDateMovedV1,
    InvoiceIssuedV1,
    RefundRecordedV1,
    VatTotal,
)
from billing_contracts.procountor import PaymentReceivedV1
from invoicing import tables as t
from invoicing.billing.domain import ChargeKind
from invoicing.contracts.domain import ChangeRefusedError, Requester, check_requester
from invoicing.money import ZERO, cents
from invoicing.numbering import InvoiceNumbers
from invoicing.receivables.domain import (
    CreditRefusedError,
    DeliveryState,
    DueDateRefusedError,
    InvoicedLine,
    PaymentState,
    allocate_payment,
    credit_lines,
    credit_refund,
    credit_vat,
    creditable_lines,
    due_date_refusal,
    invoice_status,
    refund_of_credit_reason,
    software_net_by_reseller_of_credit,
    supersedes,
)
from invoicing.receivables.repository import InvoiceNotFoundError, ReceivablesRepository, Refund
from invoicing.references import reference_for_invoice_number
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.database import Session
from service_runtime.outbox import enqueue, outgoing

__all__ = [
    "CreditRefusedError",
    "CreditRequest",
    "DueDateChange",
    "DueDateRefusedError",
    "InvoiceNotFoundError",
    "RefundNotOpenError",
    "change_due_date",
    "issue_credit_note",
    "mark_refund_paid",
    "record_delivery",
    "record_payment",
    "record_payment_status",
]

log = structlog.get_logger(__name__)

PRODUCER = "invoicing"


# --- credit notes ---


@dataclass(frozen=True)
class CreditRequest:
    """An operator's credit of one issued invoice: all of it, or some lines (with quantities)."""

    invoice_id: str
    reason: str
    credited_by: str
    lines: Mapping[int, Decimal | None] | None = None  # None: everything still creditable
    request_id: str | None = None  # idempotency key: the same request gives the same credit note


def _invoiced_lines(document: InvoiceIssuedV1) -> list[InvoicedLine]:
    return [
        InvoicedLine(
            line_no=ln.line_no,
            environment_id=ln.environment_id,
            product_code=ln.product_code,
            description=ln.description,
            period_start=ln.period_start,
            period_end=ln.period_end,
            quantity=ln.quantity,
            unit=ln.unit,
            unit_price=ln.unit_price,
            net=ln.net,
            vat_rate=ln.vat_rate,
            # P-08: everything but service hours is software.
            is_software=(ln.charge_kind or "") != ChargeKind.SERVICE_HOURS.value and ln.unit != "hour",
        )
        for ln in document.lines
    ]


def _credited_so_far(
    notes: list[CreditNoteIssuedV1],
) -> tuple[dict[int, tuple[Decimal, Decimal]], dict[Decimal, Decimal]]:
    """What earlier credit notes credited: quantity and net per invoice line, VAT per rate."""
    per_line: dict[int, tuple[Decimal, Decimal]] = {}
    vat: dict[Decimal, Decimal] = {}
    for note in notes:
        for ln in note.lines:
            if ln.credited_line_no is not None:
                qty, net = per_line.get(ln.credited_line_no, (Decimal(0), ZERO))
                per_line[ln.credited_line_no] = (qty + ln.quantity, net + ln.net)
        for v in note.vat_totals:
            vat[v.vat_rate] = vat.get(v.vat_rate, ZERO) + v.vat
    return per_line, vat


async def issue_credit_note(session: Session, request: CreditRequest, clock: Clock) -> CreditNoteIssuedV1:
    """Credit an issued invoice in full or by line, with a reason; own number, published like an invoice.

    Refuses (`CreditRefusedError`) a line that does not exist, is negative, or is credited
    already, and a quantity beyond what is left. The same `request_id` returns the same note.
    """
    if not request.reason.strip():
        raise CreditRefusedError("a credit note needs a reason")
    repo = ReceivablesRepository(session)
    if request.request_id is not None:
        existing = await repo.credit_note_of_request(request.request_id)
        if existing is not None:
            return existing
    receivable = await repo.get(request.invoice_id, for_update=True)
    invoice = await repo.document(request.invoice_id)
    if invoice is None:  # locked above, so it exists
        raise InvoiceNotFoundError(f"no invoice {request.invoice_id}")
    creditable = creditable_lines(_invoiced_lines(invoice))
    already, vat_before = _credited_so_far(await repo.credit_notes(invoice_id=request.invoice_id))
    lines = credit_lines(creditable, already, request.lines)
    credited_now = {ln.credited_line_no: ln for ln in lines}
    completes = all(
        line.net - already.get(n, (0, ZERO))[1] - (credited_now[n].net if n in credited_now else ZERO) <= ZERO
        for n, line in creditable.items()
    )
    invoice_vat = {v.vat_rate: v.vat for v in invoice.vat_totals}
    vat_totals = credit_vat(
        lines, completes_invoice=completes, invoice_vat=invoice_vat, credited_vat=vat_before
    )
    total_net = cents(sum((v.net for v in vat_totals), ZERO))
    total_vat = cents(sum((v.vat for v in vat_totals), ZERO))
    (number,) = await InvoiceNumbers(session).take(1)
    reseller_of = await repo.resellers_of([ln.environment_id for ln in lines])
    now = clock.now()
    note = CreditNoteIssuedV1(
        event_id=uuid.uuid4(),
        occurred_at=now,
        producer=PRODUCER,
        credit_note_id=f"CN-{number}",
        credit_note_number=str(number),
        reference_number=reference_for_invoice_number(number),
        credited_invoice_id=invoice.invoice_id,
        credited_invoice_number=invoice.invoice_number,
        payer_id=invoice.payer_id,
        payer_business_id=invoice.payer_business_id,
        payer_name=invoice.payer_name,
        credit_date=today_in_helsinki(clock),
        reason=request.reason.strip(),
        lines=[
            CreditNoteLine(
                line_no=i,
                credited_line_no=ln.credited_line_no,
                environment_id=ln.environment_id,
                product_code=ln.product_code,
                description=ln.description,
                period_start=ln.period_start,
                period_end=ln.period_end,
                quantity=ln.quantity,
                unit=ln.unit,
                unit_price=ln.unit_price,
                net=ln.net,
                vat_rate=ln.vat_rate,
            )
            for i, ln in enumerate(lines, start=1)
        ],
        vat_totals=[VatTotal(vat_rate=v.vat_rate, net=v.net, vat=v.vat) for v in vat_totals],
        total_net=total_net,
        total_vat=total_vat,
        total_gross=total_net + total_vat,
        software_net_by_reseller=software_net_by_reseller_of_credit(lines, reseller_of),
    )
    await repo.add_credit_note(note, created_by=request.credited_by, request_id=request.request_id, now=now)
    credited_gross = receivable.credited_gross + note.total_gross
    await repo.save_balance(
        dataclasses.replace(
            receivable,
            credited_net=receivable.credited_net + note.total_net,
            credited_gross=credited_gross,
            status=invoice_status(
                receivable.total_gross, receivable.paid_amount, credited_gross, fully_credited=completes
            ),
        ),
        now,
    )
    messages: list[CreditNoteIssuedV1 | RefundRecordedV1] = [note]
    owed = credit_refund(receivable, note.total_gross)
    if owed > ZERO:
        # B-06: a credit on money already paid goes back to the payer; one refund list (ours).
        refund = RefundRecordedV1(
            event_id=uuid.uuid4(),
            occurred_at=now,
            producer=PRODUCER,
            refund_id=f"RF-{note.credit_note_id}"[:64],
            payer_id=invoice.payer_id,
            payer_business_id=invoice.payer_business_id,
            amount=owed,
            payment_date=note.credit_date,
            payment_event_id=note.event_id,
            procountor_invoice_id=await repo.procountor_invoice_of(invoice.invoice_id),
            reason=refund_of_credit_reason(note.credit_note_number),
            credit_note_id=note.credit_note_id,
        )
        await repo.add_refund(refund, procountor_payment_id=None, now=now)
        messages.append(refund)
        log.info("refund_recorded", refund_id=refund.refund_id, payer_id=refund.payer_id, amount=str(owed))
    await enqueue(session, t.runtime_tables.outbox, [outgoing(m) for m in messages], clock)
    log.info("credit_note_issued", credit_note_id=note.credit_note_id, invoice_id=invoice.invoice_id)
    return note


# --- payments and refunds (B-06) ---


async def record_payment(session: Session, p: PaymentReceivedV1, clock: Clock) -> RefundRecordedV1 | None:
    """Apply a payment to its invoice, then to the payer's other open invoices; refund the rest (B-06).

    The allocation is `receivables.domain.allocate_payment`. Returns the refund, if any.
    """
    repo = ReceivablesRepository(session)
    if await repo.payment_known(p.procountor_payment_id):
        return None  # the same payment again (a new event id for an old payment)
    named_id = await repo.invoice_named_by(
        invoice_id=p.invoice_id,
        reference_number=p.reference_number,
        procountor_invoice_id=p.procountor_invoice_id,
    )
    candidates = await repo.open_invoices_of(p.payer_business_id)
    named = None if named_id is None else await repo.get(named_id, for_update=True)
    allocation = allocate_payment(p.amount, candidates, named=named)
    now = clock.now()
    by_id = {r.invoice_id: r for r in ([named] if named is not None else []) + candidates}
    for part in allocation.allocations:
        receivable = by_id[part.invoice_id]
        paid = receivable.paid_amount + part.amount
        status = invoice_status(receivable.total_gross, paid, receivable.credited_gross, fully_credited=False)
        await repo.save_balance(dataclasses.replace(receivable, paid_amount=paid, status=status), now)
    refund: RefundRecordedV1 | None = None
    if allocation.refund > ZERO:
        refund = RefundRecordedV1(
            event_id=uuid.uuid4(),
            occurred_at=now,
            producer=PRODUCER,
            refund_id=f"RF-{p.procountor_payment_id}"[:64],
            payer_id=p.payer_business_id,
            payer_business_id=p.payer_business_id,
            amount=allocation.refund,
            payment_date=p.payment_date,
            payment_event_id=p.event_id,
            procountor_invoice_id=p.procountor_invoice_id,
            reason=allocation.refund_reason or "",
        )
        await repo.add_refund(refund, procountor_payment_id=p.procountor_payment_id, now=now)
        await enqueue(session, t.runtime_tables.outbox, [outgoing(refund)], clock)
        log.info(
            "refund_recorded",
            refund_id=refund.refund_id,
            payer_id=refund.payer_id,
            amount=str(allocation.refund),
        )
    await repo.add_payment(
        procountor_payment_id=p.procountor_payment_id,
        event_id=p.event_id,
        payer_business_id=p.payer_business_id,
        invoice_id=named_id,
        amount=p.amount,
        payment_date=p.payment_date,
        allocations=allocation.allocations,
        refunded=allocation.refund,
        now=now,
    )
    return refund


class RefundNotOpenError(Exception):
    """The refund is unknown, or was marked paid back already (by whom and when: in the list)."""


async def mark_refund_paid(
    session: Session, refund_id: str, *, paid_by: str, note: str, clock: Clock
) -> Refund:
    """B-06: finance paid the refund back; once, attributed to the authenticated caller (`paid_by`).

    Returns the refund as it is now; raises `RefundNotOpenError` if it is unknown or paid already.
    """
    done = await ReceivablesRepository(session).mark_refund_paid(
        refund_id, paid_by=paid_by, note=note, at=clock.now()
    )
    if done is None:
        raise RefundNotOpenError(f"refund {refund_id} is unknown or paid back already")
    log.info("refund_paid_back", refund_id=refund_id, paid_by=paid_by)
    return done


# --- delivery and payment state (I-01, I-03) ---


async def record_delivery(
    session: Session,
    invoice_id: str,
    *,
    report: DeliveryState,
    procountor_invoice_id: str | None,
    clock: Clock,
) -> bool:
    """procountor-sync delivered an invoice, or failed to (retrying or for good), with the reason.

    Applied unless the invoice already holds a newer delivery report (`supersedes`); the payment
    state is another field, which no delivery report touches. False: ignored (older, or not one
    of our invoices: a credit note's deliveries are reported on the same topic).
    """
    repo = ReceivablesRepository(session)
    found, current = await repo.delivery_state(invoice_id)
    if not found or report.at is None or not supersedes(report.at, None if current is None else current.at):
        log.info("delivery_report_ignored", invoice_id=invoice_id, status=report.status.value, found=found)
        return False
    await repo.set_delivery_state(
        invoice_id, report, procountor_invoice_id=procountor_invoice_id, now=clock.now()
    )
    return True


async def record_payment_status(
    session: Session,
    invoice_id: str,
    *,
    report: PaymentState,
    procountor_invoice_id: str,
    clock: Clock,
) -> bool:
    """Procountor's payment state of an invoice changed (I-03): kept beside, never over, the delivery state.

    Applied unless a newer payment report is already held (`supersedes`). Invoicing's own status
    does not follow it: that follows the payments invoicing allocated (B-06).
    """
    repo = ReceivablesRepository(session)
    found, current = await repo.payment_state(invoice_id)
    if not found or report.at is None or not supersedes(report.at, None if current is None else current.at):
        log.info("payment_report_ignored", invoice_id=invoice_id, status=report.status.value, found=found)
        return False
    await repo.set_payment_state(
        invoice_id, report, procountor_invoice_id=procountor_invoice_id, now=clock.now()
    )
    return True


# --- due-date moves (B-23) ---


@dataclass(frozen=True)
class DueDateChange:
    """Support moves one invoice's due date on the customer's request (B-23)."""

    invoice_id: str
    new_due_date: dt.date
    reason: str
    changed_by: str
    requested_by: WireRequester
    requested_at: dt.datetime
    source: str
    event_id: uuid.UUID | None = None


def _requester_refusal(requested_by: WireRequester) -> DueDateRefusedError | None:
    try:
        check_requester(
            Requester(
                person_name=requested_by.person_name,
                role=requested_by.role,
                has_basic_info_and_user_rights=requested_by.has_basic_info_and_user_rights,
                is_signatory=requested_by.is_signatory,
            )
        )
    except ChangeRefusedError as exc:
        return DueDateRefusedError(exc.rule, exc.reason)
    return None


async def change_due_date(session: Session, change: DueDateChange, clock: Clock) -> dt.date:
    """Move the due date, audited (who asked, who changed it, when, why); refusals are audited too.

    Raises `DueDateRefusedError` after recording the refusal (the caller commits it).
    """
    repo = ReceivablesRepository(session)
    if change.event_id is not None:
        done = await repo.due_date_of_change(change.event_id)
        if done is not None:
            return done
    receivable = await repo.get(change.invoice_id, for_update=True)
    refusal = _requester_refusal(change.requested_by) or due_date_refusal(receivable, change.new_due_date)
    now = clock.now()
    await repo.add_due_date_change(
        invoice_id=change.invoice_id,
        old_due_date=receivable.due_date,
        new_due_date=change.new_due_date,
        outcome="refused" if refusal else "accepted",
        reason=change.reason,
        refusal=None if refusal is None else str(refusal),
        changed_by=change.changed_by,
        requested_by=change.requested_by.model_dump(mode="json"),
        requested_at=change.requested_at,
        recorded_at=now,
        source=change.source,
        event_id=change.event_id,
    )
    if refusal is not None:
        raise refusal
    await repo.set_due_date(change.invoice_id, change.new_due_date, now)
    # Procountor holds the receivable (I-01): procountor-sync moves the due date there too.
    moved = InvoiceDueDateMovedV1(
        event_id=uuid.uuid4(),
        occurred_at=now,
        producer=PRODUCER,
        invoice_id=change.invoice_id,
        invoice_number=str(receivable.invoice_number),
        old_due_date=receivable.due_date,
        new_due_date=change.new_due_date,
        reason=change.reason,
    )
    await enqueue(session, t.runtime_tables.outbox, [outgoing(moved)], clock)
    log.info("due_date_changed", invoice_id=change.invoice_id, due_date=change.new_due_date.isoformat())
    return change.new_due_date
