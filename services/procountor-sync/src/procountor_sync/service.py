"""Procountor-sync use cases: queue issued invoices, deliver them to Procountor (I-01)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.invoicing import InvoiceIssuedV1
from billing_contracts.procountor import DeliveryStatus, InvoiceDeliveredV1, InvoiceDeliveryFailedV1
from procountor_sync.mapping import business_partner_body, invoice_body
from procountor_sync.tables import deliveries, runtime_tables
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.outbox import enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "procountor-sync"


class ProcountorGateway(Protocol):
    """What delivery needs of Procountor (the REST client implements it; unit tests fake it)."""

    async def find_customer(self, business_id: str) -> int | None: ...
    async def create_customer(self, body: dict[str, Any]) -> int: ...
    async def deliver_invoice(self, body: dict[str, Any]) -> tuple[int, str]:
        """Create, approve and send an invoice, idempotently by `originalInvoiceNumber`; (id, status)."""
        ...


class DeliveryRefusedError(Exception):
    """Procountor refused the invoice for a reason a retry will not change (a 4xx answer)."""


class InvoiceQueue:
    """Batch use case: every issued invoice becomes one pending delivery."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[InvoiceIssuedV1]) -> list[Rejection]:
        now = self._clock.now()
        rows = [
            {
                "invoice_id": e.invoice_id,
                "invoice_number": e.invoice_number,
                "payload": e.model_dump(mode="json"),
                "status": "pending",
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for e in events
        ]
        if rows:
            await session.execute(insert(deliveries).values(rows).on_conflict_do_nothing())
        return []


class InvoiceDeliverer:
    """Delivers pending invoices: lease, call Procountor outside any transaction, record the outcome.

    A lease (not a held row lock) covers the HTTP calls, so no transaction stays open across the
    network; if the process dies, the lease expires and another attempt continues idempotently.
    """

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        gateway: ProcountorGateway,
        clock: Clock,
        seller_iban: str,
        vat_status: int,
        max_attempts: int = 8,
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._sessions = sessions
        self._gateway = gateway
        self._clock = clock
        self._seller_iban = seller_iban
        self._vat_status = vat_status
        self._max_attempts = max_attempts
        self._lease = lease

    async def deliver_due(self, limit: int = 10) -> int:
        """Deliver up to `limit` due invoices; return how many were attempted."""
        leased = await self._lease_due(limit)
        for row in leased:
            await self._deliver(row)
        return len(leased)

    async def _lease_due(self, limit: int) -> list[Any]:
        now = self._clock.now()
        d = deliveries.c
        async with self._sessions.begin() as session:
            due = (
                select(d.invoice_id)
                .where(
                    d.status == "pending",
                    d.next_attempt_at <= now,
                    or_(d.leased_until.is_(None), d.leased_until < now),
                )
                .order_by(d.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = (
                await session.execute(
                    update(deliveries)
                    .where(d.invoice_id.in_(due.scalar_subquery()))
                    .values(leased_until=now + self._lease, attempts=d.attempts + 1)
                    .returning(d.invoice_id, d.payload, d.attempts)
                )
            ).all()
        return list(rows)

    async def _deliver(self, row: Any) -> None:
        invoice = InvoiceIssuedV1.model_validate(row.payload)
        try:
            partner_id = await self._gateway.find_customer(invoice.payer_business_id)
            if partner_id is None:
                partner_id = await self._gateway.create_customer(business_partner_body(invoice))
            body = invoice_body(
                invoice, partner_id=partner_id, seller_iban=self._seller_iban, vat_status=self._vat_status
            )
            procountor_id, status = await self._gateway.deliver_invoice(body)
        except Exception as exc:
            await self._failed(invoice, row.attempts, exc)
            return
        now = self._clock.now()
        delivered = InvoiceDeliveredV1(
            event_id=uuid.uuid4(),
            occurred_at=now,
            producer=PRODUCER,
            invoice_id=invoice.invoice_id,
            procountor_invoice_id=str(procountor_id),
            status=DeliveryStatus.SENT
            if status in ("SENT", "PAID", "PARTLY_PAID", "MARKED_PAID")
            else DeliveryStatus.AWAITING_APPROVAL,
            delivered_at=now,
        )
        async with self._sessions.begin() as session:
            await session.execute(
                update(deliveries)
                .where(deliveries.c.invoice_id == invoice.invoice_id)
                .values(
                    status="delivered",
                    leased_until=None,
                    last_error=None,
                    procountor_partner_id=str(partner_id),
                    procountor_invoice_id=str(procountor_id),
                    procountor_status=status,
                    updated_at=now,
                )
            )
            await enqueue(session, runtime_tables.outbox, [outgoing(delivered)], self._clock)
        log.info(
            "invoice_delivered",
            invoice_id=invoice.invoice_id,
            procountor_invoice_id=procountor_id,
            status=status,
        )

    async def _failed(self, invoice: InvoiceIssuedV1, attempts: int, exc: Exception) -> None:
        now = self._clock.now()
        final = isinstance(exc, DeliveryRefusedError) or attempts >= self._max_attempts
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning(
            "invoice_delivery_failed",
            invoice_id=invoice.invoice_id,
            attempts=attempts,
            final=final,
            reason=reason,
        )
        async with self._sessions.begin() as session:
            await session.execute(
                update(deliveries)
                .where(deliveries.c.invoice_id == invoice.invoice_id)
                .values(
                    status="failed" if final else "pending",
                    leased_until=None,
                    last_error=reason,
                    next_attempt_at=now + timedelta(seconds=min(2**attempts, 3600)),
                    updated_at=now,
                )
            )
            if final:
                failed = InvoiceDeliveryFailedV1(
                    event_id=uuid.uuid4(),
                    occurred_at=now,
                    producer=PRODUCER,
                    invoice_id=invoice.invoice_id,
                    reason=reason,
                    retryable=not isinstance(exc, DeliveryRefusedError),
                    attempts=attempts,
                    failed_at=now,
                )
                await enqueue(session, runtime_tables.outbox, [outgoing(failed)], self._clock)
