"""Receivables' persistence: issued invoices as receivables, credit notes, payments, refunds and
due-date changes. The only module of the context that speaks SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.invoicing import CreditNoteIssuedV1, InvoiceIssuedV1, RefundRecordedV1
from invoicing import tables as t
from invoicing.billing.domain import InvoiceStatus
from invoicing.receivables.domain import (
    Allocation,
    DeliveryState,
    DeliveryStatus,
    PaymentState,
    PaymentStatus,
    Receivable,
)

_I = t.invoices.c
_C = t.credit_notes.c
_P = t.payments.c
_R = t.refunds.c
_D = t.due_date_changes.c


class InvoiceNotFoundError(LookupError):
    """No invoice with that id."""


#: A refund's states (B-06): to pay back, then paid back (once, by whom and when).
REFUND_TO_PAY = "to_refund"
REFUND_PAID_BACK = "paid_back"


@dataclass(frozen=True, slots=True)
class Refund:
    """One refund of the one list (B-06), as finance sees it."""

    refund_id: str
    payer_id: str
    payer_business_id: str
    amount: Decimal
    payment_date: dt.date
    payment_event_id: UUID
    procountor_payment_id: str | None
    procountor_invoice_id: str | None
    reason: str
    status: str
    created_at: dt.datetime
    credit_note_id: str | None
    paid_at: dt.datetime | None
    paid_by: str | None
    paid_note: str | None


def _refund(row: Row[Any]) -> Refund:
    return Refund(**{f.name: getattr(row, f.name) for f in fields(Refund)})


def _receivable(row: Row[Any]) -> Receivable:
    return Receivable(
        invoice_id=row.invoice_id,
        invoice_number=row.invoice_number,
        payer_id=row.payer_id,
        status=InvoiceStatus(row.status),
        invoice_date=row.invoice_date,
        due_date=row.due_date,
        total_gross=row.total_gross,
        credited_net=row.credited_net,
        credited_gross=row.credited_gross,
        paid_amount=row.paid_amount,
    )


class ReceivablesRepository:
    """Loads and saves what receivables keeps, in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- invoices ---

    async def get(self, invoice_id: str, *, for_update: bool = False) -> Receivable:
        """The invoice as a receivable (row-locked for a change); `InvoiceNotFoundError` if none."""
        query = select(t.invoices).where(_I.invoice_id == invoice_id)
        row = (await self._session.execute(query.with_for_update() if for_update else query)).first()
        if row is None:
            raise InvoiceNotFoundError(f"no invoice {invoice_id}")
        return _receivable(row)

    async def document(self, invoice_id: str) -> InvoiceIssuedV1 | None:
        """The invoice as it was published, if it exists."""
        document = await self._session.scalar(select(_I.document).where(_I.invoice_id == invoice_id))
        return None if document is None else InvoiceIssuedV1.model_validate(document)

    async def open_invoices_of(self, payer_id: str) -> list[Receivable]:
        """The payer's open invoices, locked, in the order a payment pays them (B-06)."""
        rows = await self._session.execute(
            select(t.invoices)
            .where(_I.payer_id == payer_id, _I.status == InvoiceStatus.OPEN.value)
            .order_by(_I.due_date, _I.invoice_number)
            .with_for_update()
        )
        return [_receivable(r) for r in rows.all()]

    async def invoice_named_by(
        self, *, invoice_id: str | None, reference_number: str | None, procountor_invoice_id: str
    ) -> str | None:
        """The invoice a payment names: by our id, else by reference, else by Procountor's id."""
        if invoice_id is not None:
            found = await self._session.scalar(select(_I.invoice_id).where(_I.invoice_id == invoice_id))
            if found is not None:
                return str(found)
        if reference_number is not None:
            found = await self._session.scalar(
                select(_I.invoice_id).where(_I.reference_number == reference_number)
            )
            if found is not None:
                return str(found)
        found = await self._session.scalar(
            select(_I.invoice_id).where(_I.procountor_invoice_id == procountor_invoice_id)
        )
        return None if found is None else str(found)

    async def save_balance(self, receivable: Receivable, now: dt.datetime) -> None:
        """Store what was credited and paid, and the status that follows."""
        await self._session.execute(
            update(t.invoices)
            .where(_I.invoice_id == receivable.invoice_id)
            .values(
                paid_amount=receivable.paid_amount,
                credited_net=receivable.credited_net,
                credited_gross=receivable.credited_gross,
                status=receivable.status.value,
                updated_at=now,
            )
        )

    async def set_due_date(self, invoice_id: str, due_date: dt.date, now: dt.datetime) -> None:
        await self._session.execute(
            update(t.invoices).where(_I.invoice_id == invoice_id).values(due_date=due_date, updated_at=now)
        )

    async def delivery_state(self, invoice_id: str) -> tuple[bool, DeliveryState | None]:
        """Whether the invoice exists, and its delivery state (row-locked: reports are applied one at a time)."""
        row = (
            await self._session.execute(
                select(_I.delivery_status, _I.delivery_error, _I.delivery_status_at)
                .where(_I.invoice_id == invoice_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            return False, None
        if row.delivery_status is None:
            return True, None
        return True, DeliveryState(
            status=DeliveryStatus(row.delivery_status), error=row.delivery_error, at=row.delivery_status_at
        )

    async def set_delivery_state(
        self, invoice_id: str, state: DeliveryState, *, procountor_invoice_id: str | None, now: dt.datetime
    ) -> None:
        """procountor-sync's delivery report (I-01); the payment state is not touched."""
        values: dict[str, Any] = {
            "delivery_status": state.status.value,
            "delivery_error": state.error,
            "delivery_status_at": state.at,
            "updated_at": now,
        }
        if procountor_invoice_id is not None:
            values["procountor_invoice_id"] = procountor_invoice_id
        await self._session.execute(update(t.invoices).where(_I.invoice_id == invoice_id).values(**values))

    async def payment_state(self, invoice_id: str) -> tuple[bool, PaymentState | None]:
        """Whether the invoice exists, and Procountor's payment state of it (row-locked)."""
        row = (
            await self._session.execute(
                select(
                    _I.payment_status,
                    _I.procountor_paid_amount,
                    _I.procountor_open_amount,
                    _I.payment_status_at,
                )
                .where(_I.invoice_id == invoice_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            return False, None
        if row.payment_status is None:
            return True, None
        return True, PaymentState(
            status=PaymentStatus(row.payment_status),
            paid_amount=row.procountor_paid_amount,
            open_amount=row.procountor_open_amount,
            at=row.payment_status_at,
        )

    async def set_payment_state(
        self, invoice_id: str, state: PaymentState, *, procountor_invoice_id: str, now: dt.datetime
    ) -> None:
        """Procountor's payment state (I-03); the delivery state is not touched."""
        await self._session.execute(
            update(t.invoices)
            .where(_I.invoice_id == invoice_id)
            .values(
                payment_status=state.status.value,
                procountor_paid_amount=state.paid_amount,
                procountor_open_amount=state.open_amount,
                payment_status_at=state.at,
                procountor_invoice_id=procountor_invoice_id,
                updated_at=now,
            )
        )

    # --- credit notes ---

    async def credit_note_of_request(self, request_id: str) -> CreditNoteIssuedV1 | None:
        """The credit note an idempotency key already produced, if any."""
        document = await self._session.scalar(select(_C.document).where(_C.request_id == request_id))
        return None if document is None else CreditNoteIssuedV1.model_validate(document)

    async def credit_notes(
        self, *, invoice_id: str | None = None, payer_id: str | None = None
    ) -> list[CreditNoteIssuedV1]:
        """Credit notes as published, by number; filtered by invoice and payer."""
        query = select(_C.document).order_by(_C.credit_note_number)
        if invoice_id:
            query = query.where(_C.invoice_id == invoice_id)
        if payer_id:
            query = query.where(_C.payer_id == payer_id)
        return [CreditNoteIssuedV1.model_validate(d) for d in (await self._session.execute(query)).scalars()]

    async def credit_note(self, credit_note_id: str) -> CreditNoteIssuedV1 | None:
        document = await self._session.scalar(select(_C.document).where(_C.credit_note_id == credit_note_id))
        return None if document is None else CreditNoteIssuedV1.model_validate(document)

    async def add_credit_note(
        self, note: CreditNoteIssuedV1, *, created_by: str, request_id: str | None, now: dt.datetime
    ) -> None:
        await self._session.execute(
            insert(t.credit_notes).values(
                credit_note_id=note.credit_note_id,
                credit_note_number=int(note.credit_note_number),
                reference_number=note.reference_number,
                invoice_id=note.credited_invoice_id,
                payer_id=note.payer_id,
                credit_date=note.credit_date,
                reason=note.reason,
                total_net=note.total_net,
                total_vat=note.total_vat,
                total_gross=note.total_gross,
                created_by=created_by,
                request_id=request_id,
                document=note.model_dump(mode="json"),
                created_at=now,
            )
        )

    async def resellers_of(self, environments: Sequence[str]) -> dict[str, str | None]:
        """P-08: the reseller of each environment's contract."""
        c = t.contracts.c
        rows = await self._session.execute(
            select(c.environment_id, c.reseller_partner_id).where(
                c.environment_id.in_(sorted(set(environments)))
            )
        )
        return {env: reseller for env, reseller in rows.tuples()}  # noqa: C416

    # --- payments and refunds (B-06) ---

    async def payment_known(self, procountor_payment_id: str) -> bool:
        found = await self._session.scalar(
            select(_P.procountor_payment_id).where(_P.procountor_payment_id == procountor_payment_id)
        )
        return found is not None

    async def add_payment(
        self,
        *,
        procountor_payment_id: str,
        event_id: UUID,
        payer_business_id: str,
        invoice_id: str | None,
        amount: Decimal,
        payment_date: dt.date,
        allocations: Sequence[Allocation],
        refunded: Decimal,
        now: dt.datetime,
    ) -> None:
        await self._session.execute(
            insert(t.payments).values(
                procountor_payment_id=procountor_payment_id,
                event_id=event_id,
                payer_business_id=payer_business_id,
                invoice_id=invoice_id,
                amount=amount,
                payment_date=payment_date,
                allocations=[
                    {"invoice_id": a.invoice_id, "amount": format(a.amount, "f")} for a in allocations
                ],
                refunded=refunded,
                received_at=now,
            )
        )

    async def add_refund(
        self, refund: RefundRecordedV1, *, procountor_payment_id: str | None, now: dt.datetime
    ) -> None:
        await self._session.execute(
            insert(t.refunds).values(
                refund_id=refund.refund_id,
                payer_id=refund.payer_id,
                payer_business_id=refund.payer_business_id,
                amount=refund.amount,
                payment_date=refund.payment_date,
                payment_event_id=refund.payment_event_id,
                procountor_payment_id=procountor_payment_id,
                procountor_invoice_id=refund.procountor_invoice_id,
                reason=refund.reason,
                credit_note_id=refund.credit_note_id,
                created_at=now,
            )
        )

    async def refunds(self, payer_id: str | None = None, status: str | None = None) -> list[Refund]:
        """Refund records, oldest first (B-06)."""
        query = select(t.refunds).order_by(_R.created_at, _R.refund_id)
        if payer_id:
            query = query.where(_R.payer_id == payer_id)
        if status:
            query = query.where(_R.status == status)
        return [_refund(r) for r in (await self._session.execute(query)).all()]

    async def mark_refund_paid(
        self, refund_id: str, *, paid_by: str, note: str, at: dt.datetime
    ) -> Refund | None:
        """`to_refund` → `paid_back`, once; None if the refund is unknown or not to refund any more."""
        row = (
            await self._session.execute(
                update(t.refunds)
                .where(_R.refund_id == refund_id, _R.status == REFUND_TO_PAY)
                .values(status=REFUND_PAID_BACK, paid_by=paid_by, paid_note=note or None, paid_at=at)
                .returning(*t.refunds.c)
            )
        ).first()
        return None if row is None else _refund(row)

    async def procountor_invoice_of(self, invoice_id: str) -> str | None:
        """The invoice's id in Procountor, once procountor-sync reported it delivered (I-01)."""
        found: str | None = await self._session.scalar(
            select(_I.procountor_invoice_id).where(_I.invoice_id == invoice_id)
        )
        return found

    # --- due-date changes (B-23) ---

    async def due_date_of_change(self, event_id: UUID) -> dt.date | None:
        """The due date a change command already set (the same command again), if any."""
        done = await self._session.scalar(select(_D.new_due_date).where(_D.event_id == event_id))
        return None if done is None else dt.date.fromisoformat(str(done))

    async def add_due_date_change(self, **values: Any) -> None:
        """The audit row of a due-date change, accepted or refused."""
        await self._session.execute(insert(t.due_date_changes).values(**values))

    async def due_date_changes(self, invoice_id: str) -> list[Row[Any]]:
        rows = await self._session.execute(
            select(t.due_date_changes).where(_D.invoice_id == invoice_id).order_by(_D.id)
        )
        return list(rows.all())
