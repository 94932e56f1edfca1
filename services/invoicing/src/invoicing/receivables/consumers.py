"""Receivables' Kafka intake: Procountor's side of issued invoices (payments, deliveries) and
due-date change commands. Thin: decode → one use case per message."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from billing_contracts.base import Message
from billing_contracts.contracts import DueDateChangeRequestedV1
from billing_contracts.invoicing import ChangeRequestRefusedV1
from billing_contracts.procountor import (
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    InvoicePaymentStatusChangedV1,
    PaymentReceivedV1,
)
from invoicing import tables as t
from invoicing.receivables.domain import DeliveryState, DeliveryStatus, PaymentState, PaymentStatus
from invoicing.receivables.service import (
    PRODUCER,
    DueDateChange,
    DueDateRefusedError,
    InvoiceNotFoundError,
    change_due_date,
    record_delivery,
    record_payment,
    record_payment_status,
)
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.database import Session
from service_runtime.outbox import enqueue, outgoing


class ReceivablesIntake:
    """Batch use case for Procountor's side of issued invoices: payments, deliveries (I-01, I-03, B-06)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        rejections: list[Rejection] = []
        for event in events:
            match event:
                case PaymentReceivedV1():
                    await record_payment(session, event, self._clock)
                case InvoiceDeliveredV1():
                    await record_delivery(
                        session,
                        event.invoice_id,
                        report=DeliveryState(
                            status=DeliveryStatus(event.status.value), error=None, at=event.delivered_at
                        ),
                        procountor_invoice_id=event.procountor_invoice_id,
                        clock=self._clock,
                    )
                case InvoiceDeliveryFailedV1():
                    status = DeliveryStatus.FAILED_RETRYING if event.retryable else DeliveryStatus.FAILED
                    await record_delivery(
                        session,
                        event.invoice_id,
                        report=DeliveryState(status=status, error=event.reason, at=event.failed_at),
                        procountor_invoice_id=None,
                        clock=self._clock,
                    )
                case InvoicePaymentStatusChangedV1():
                    # Procountor's view of the receivable (I-03); our own status follows payments (B-06).
                    await record_payment_status(
                        session,
                        event.invoice_id,
                        report=PaymentState(
                            status=PaymentStatus(event.status.value),
                            paid_amount=event.paid_amount,
                            open_amount=event.open_amount,
                            at=event.changed_at,
                        ),
                        procountor_invoice_id=event.procountor_invoice_id,
                        clock=self._clock,
                    )
                case _:
                    rejections.append(
                        Rejection(event.event_id, f"unsupported message {type(event).__name__}")
                    )
        return rejections


class DueDateIntake:
    """Batch use case for `DueDateChangeRequestedV1` (B-23): applied, or refused with the reason."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        rejections: list[Rejection] = []
        for event in events:
            if not isinstance(event, DueDateChangeRequestedV1):
                rejections.append(Rejection(event.event_id, f"unsupported message {type(event).__name__}"))
                continue
            change = DueDateChange(
                invoice_id=event.invoice_id,
                new_due_date=event.new_due_date,
                reason=event.reason,
                changed_by=event.changed_by,
                requested_by=event.requested_by,
                requested_at=event.requested_at,
                source="kafka",
                event_id=event.event_id,
            )
            try:
                await change_due_date(session, change, self._clock)
            except (DueDateRefusedError, InvoiceNotFoundError) as exc:
                rule, reason = (
                    (exc.rule, exc.reason) if isinstance(exc, DueDateRefusedError) else ("B-23", str(exc))
                )
                refused = ChangeRequestRefusedV1(
                    event_id=uuid.uuid4(),
                    occurred_at=self._clock.now(),
                    producer=PRODUCER,
                    key=event.invoice_id,
                    refused_event_id=event.event_id,
                    refused_message_type=event.message_type,
                    rule=rule,
                    reason=reason,
                )
                await enqueue(session, t.runtime_tables.outbox, [outgoing(refused)], self._clock)
                rejections.append(Rejection(event.event_id, f"{rule}: {reason}"))
        return rejections
