"""Procountor-sync use cases: hand invoices, credit notes, due dates and refunds to Procountor; bring
customers, products and payments back (I-01…I-03, B-06, B-20…B-23).

Each delivery is leased by one replica (renewed by heartbeat), worked on outside any transaction,
and its outcome written with the events it announces in one transaction (outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Protocol

import structlog
from pydantic import SecretStr

from billing_contracts.base import Message
from billing_contracts.contracts import EInvoiceAddress, PostalAddress
from billing_contracts.invoicing import (
    ContractChangedV1,
    CreditNoteIssuedV1,
    InvoiceDueDateMovedV1,
    InvoiceIssuedV1,
    RefundRecordedV1,
)
from billing_contracts.procountor import (
    CustomerChangedInProcountorV1,
    DeliveryStatus,
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    InvoicePaymentStatusChangedV1,
    InvoiceTotalsMismatchedV1,
    PaymentReceivedV1,
    ProductChangedInProcountorV1,
    TotalsFigures,
)
from billing_contracts.usage import HourEntryRecordedV1
from procountor_sync import domain
from procountor_sync.domain import (
    CustomerData,
    DeliveryPolicy,
    ProductData,
    RetrySchedule,
    Totals,
)
from procountor_sync.records import Delivery, InvoiceState
from procountor_sync.repository import (
    CustomerRepository,
    DeliveryRepository,
    Engine,
    HourEntryRepository,
    MismatchRepository,
    PaymentRepository,
    ProcountorInvoiceRepository,
    ProductRepository,
    WatermarkRepository,
    WebhookReceiptRepository,
    advisory_lock,
)
from procountor_sync.tables import runtime_tables
from service_runtime.clock import Clock, today_in_helsinki
from service_runtime.consumer import Rejection
from service_runtime.database import Session, Sessions
from service_runtime.metrics import ProcountorMetrics
from service_runtime.outbox import enqueue, outgoing
from service_runtime.ratelimit import RateLimitedLog

log = structlog.get_logger(__name__)

PRODUCER = "procountor-sync"
#: What a customer update that a later change of the same payer overtook records instead of a push.
SUPERSEDED = "superseded by a later change of the customer"
JsonObject = dict[str, Any]
#: Where polling starts when it has never run: everything Procountor holds is read once.
FIRST_WATERMARK = "2000-01-01T00:00:00"


class Procountor(Protocol):
    """What the use cases need of Procountor (`ProcountorClient` is it; unit tests fake it)."""

    async def find_business_partner_by_identifier(self, business_id: str) -> JsonObject | None: ...
    async def get_business_partner(self, partner_id: int) -> JsonObject: ...
    async def create_business_partner(self, body: Mapping[str, Any]) -> JsonObject: ...
    async def replace_business_partner(self, partner_id: int, body: Mapping[str, Any]) -> JsonObject: ...
    async def business_partners_changed_since(self, version: str) -> list[JsonObject]: ...
    async def create_product(self, body: Mapping[str, Any]) -> JsonObject: ...
    async def find_product_by_code(self, code: str) -> JsonObject | None: ...
    async def list_products(self, **filters: str) -> list[JsonObject]: ...
    async def find_invoice_by_original_number(self, number: str) -> JsonObject | None: ...
    async def invoices_changed_since(self, version: str) -> list[JsonObject]: ...
    async def create_invoice(self, body: Mapping[str, Any]) -> JsonObject: ...
    async def approve_invoice(self, invoice_id: int) -> JsonObject: ...
    async def send_invoice(self, invoice_id: int) -> JsonObject: ...
    async def get_invoice(self, invoice_id: int) -> JsonObject: ...
    async def update_invoice(self, invoice_id: int, body: Mapping[str, Any]) -> JsonObject: ...
    async def set_invoice_notes(self, invoice_id: int, notes: str) -> None: ...
    async def mark_paid(self, invoice_id: int, body: Mapping[str, Any]) -> JsonObject: ...
    async def list_payment_events(self, invoice_id: int) -> list[JsonObject]: ...


class DeliveryRefusedError(Exception):
    """Procountor refused for a reason a retry will not change; a person must look (or requeue)."""


class WaitingError(Exception):
    """The delivery depends on another one not done yet (e.g. a credit note on an undelivered invoice)."""


def is_refusal(exc: BaseException) -> bool:
    """A 4xx answer other than 401, 408, 409 and 429 is final; everything else is worth retrying.

    A 400 about a stale `version` is a race (a person saved the customer between our read and
    our write), not a refusal: the retry reads the new version and merges again.
    """
    if isinstance(exc, DeliveryRefusedError | domain.UnknownCountryError):
        return True
    has_field = getattr(exc, "has_field", None)
    if callable(has_field) and has_field("version"):
        return False
    status = getattr(exc, "status", 0)
    return isinstance(status, int) and 400 <= status < 500 and status not in (401, 408, 409, 429)


def _envelope(clock: Clock) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": clock.now(), "producer": PRODUCER}


# --- intake (consumers call these) --------------------------------------------------------------


class DeliveryIntake:
    """Batch use case: every invoice, credit note, due-date move and refund becomes one delivery, and
    so does a change of a known payer's billing data (a customer update, I-02)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        customers = CustomerRepository(session)
        for e in events:
            base = {
                "payload": e.model_dump(mode="json"),
                "status": "pending",
                "created_at": now,
                "updated_at": now,
            }
            match e:
                case InvoiceIssuedV1():
                    rows.append(
                        base
                        | {
                            "delivery_id": f"invoice:{e.invoice_id}",
                            "kind": "invoice",
                            "invoice_id": e.invoice_id,
                            "invoice_number": e.invoice_number,
                            "payer_business_id": e.payer_business_id,
                        }
                    )
                case CreditNoteIssuedV1():
                    rows.append(
                        base
                        | {
                            "delivery_id": f"credit_note:{e.credit_note_id}",
                            "kind": "credit_note",
                            "invoice_id": e.credit_note_id,
                            "invoice_number": e.credit_note_number,
                            "payer_business_id": e.payer_business_id,
                        }
                    )
                case InvoiceDueDateMovedV1():
                    rows.append(
                        base
                        | {
                            "delivery_id": f"due_date:{e.invoice_id}:{e.event_id}",
                            "kind": "due_date",
                            "invoice_id": e.invoice_id,
                            "invoice_number": e.invoice_number,
                        }
                    )
                case ContractChangedV1():
                    # I-02: only a payer's own contract whose billing data differs from what
                    # Procountor was last synced to; an unknown payer is created by its first invoice.
                    ours = domain.customer_of_contract(e)
                    if ours is None:
                        continue
                    known = await customers.get(e.business_id)
                    if known is None or CustomerData.from_json(known.base) == ours:
                        continue
                    rows.append(
                        base
                        | {
                            "delivery_id": f"customer:{e.business_id}:{e.event_id}",
                            "kind": "customer",
                            "payer_business_id": e.business_id,
                        }
                    )
                case RefundRecordedV1():
                    # B-06: invoicing keeps the refund list; we only note it in Procountor.
                    rows.append(
                        base
                        | {
                            "delivery_id": f"refund_note:{e.refund_id}",
                            "kind": "refund_note",
                            "payer_business_id": e.payer_business_id,
                        }
                    )
        await DeliveryRepository(session).add(rows)
        return []


class HourEntryIntake:
    """Batch use case: hour entries kept for the payroll import file (I-04)."""

    async def __call__(self, session: Session, events: Sequence[HourEntryRecordedV1]) -> list[Rejection]:
        await HourEntryRepository(session).upsert(
            [
                {
                    "entry_id": e.entry_id,
                    "environment_id": e.environment_id,
                    "employee_id": e.employee_id,
                    "service_product_code": e.service_product_code,
                    "work_date": e.work_date,
                    "hours": e.hours,
                    "billable": e.billable,
                    "recorded_at": e.recorded_at,
                }
                for e in events
            ]
        )
        return []


# --- the sync ----------------------------------------------------------------------------------


@dataclass
class SyncOptions:
    """Timings and limits; tests make them short."""

    concurrency: int = 16
    lease_seconds: float = 15.0
    idle_seconds: float = 1.0
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    poll_seconds: float = 60.0
    webhook_tolerance_seconds: float = 300.0
    file_payers: frozenset[str] = frozenset()
    """Payers whose API is not enabled: their invoices go by the I-05 import file only."""


class ProcountorSync:
    """The use cases of the service over one Procountor company."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        engine: Engine,
        procountor: Procountor,
        clock: Clock,
        policy: DeliveryPolicy,
        options: SyncOptions,
        metrics: ProcountorMetrics,
        on_outbox_written: Callable[[], None] = lambda: None,
        webhook_secret: SecretStr | None = None,
    ) -> None:
        self._sessions = sessions
        self._engine = engine
        self.procountor = procountor
        self._clock = clock
        self.policy = policy
        self.options = options
        self.metrics = metrics
        self._wake_relay = on_outbox_written
        self._webhook_secret = webhook_secret
        self.replica = f"replica-{uuid.uuid4().hex[:12]}"
        # During an outage the loops fail every second: one line a minute, not one a second.
        self._warnings = RateLimitedLog(log)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._handlers: dict[str, Callable[[Delivery], Awaitable[None]]] = {
            "invoice": self._deliver_invoice,
            "credit_note": self._deliver_credit_note,
            "due_date": self._move_due_date,
            "refund_note": self._note_refund,
            "customer": self._update_customer,
        }

    # --- the delivery loop -----------------------------------------------------------------------

    async def run_deliveries(self) -> None:
        """Lease due deliveries up to `concurrency`, work on them, renew their leases; forever."""
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while True:
                try:
                    await self._fill()
                    self._warnings.recovered("delivery_lease_failed")
                except Exception:
                    self._warnings.warning("delivery_lease_failed", exc_info=True)
                waiting: set[asyncio.Future[Any]] = set(self._in_flight.values())
                sleeper = asyncio.ensure_future(asyncio.sleep(self.options.idle_seconds))
                await asyncio.wait(waiting | {sleeper}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
        finally:
            heartbeat.cancel()
            for task in self._in_flight.values():
                task.cancel()

    async def deliver_due(self) -> int:
        """Deliver what is due now, in parallel up to `concurrency`; how many were attempted (tests, CLI)."""
        attempted = 0
        while True:
            leased = await self._fill()
            attempted += leased
            if not self._in_flight:
                return attempted
            await asyncio.wait(set(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED)

    async def _fill(self) -> int:
        free = self.options.concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        async with self._sessions.begin() as session:
            rows = await DeliveryRepository(session).lease(
                replica=self.replica, limit=free, lease_seconds=self.options.lease_seconds
            )
        for row in rows:
            task = asyncio.create_task(self._process(row), name=f"deliver {row.delivery_id}")
            self._in_flight[row.delivery_id] = task
            task.add_done_callback(self._forget(row.delivery_id))
        return len(rows)

    def _forget(self, delivery_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(delivery_id, None)

        return done

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.lease_seconds / 3)
            with contextlib.suppress(Exception):
                async with self._sessions.begin() as session:
                    await DeliveryRepository(session).renew(
                        replica=self.replica,
                        ids=list(self._in_flight),
                        lease_seconds=self.options.lease_seconds,
                    )

    async def _process(self, row: Delivery) -> None:
        try:
            await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a task's last word: logged, never lost silently
            # Recording the failure failed too (e.g. the database went away): the delivery keeps
            # its lease until it expires and is then taken up again, so nothing is lost.
            log.warning(
                "delivery_failure_not_recorded",
                delivery_id=row.delivery_id,
                reason=f"{type(exc).__name__}: {exc}"[:300],
                lease_seconds=self.options.lease_seconds,
            )

    async def _attempt(self, row: Delivery) -> None:
        try:
            await self._handlers[row.kind](row)
        except asyncio.CancelledError:
            raise
        except WaitingError as exc:
            await self._retry(row, exc, announce=False)
        except Exception as exc:
            if is_refusal(exc):
                await self._refused(row, exc)
            else:
                await self._retry(row, exc, announce=True)

    async def _retry(self, row: Delivery, exc: BaseException, *, announce: bool) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        retry_after = getattr(exc, "retry_after", None)
        delay = self.options.schedule.delay(
            row.attempts,
            jitter=random.random(),
            retry_after=None if retry_after is None else timedelta(seconds=float(retry_after)),
        )
        self._warnings.warning(
            f"delivery_retrying:{row.kind}",
            delivery_id=row.delivery_id,
            attempts=row.attempts,
            reason=reason[:300],
            retry_in_s=round(delay.total_seconds(), 2),
        )
        if announce:
            self.metrics.deliveries.labels(kind=row.kind, state="retrying").inc()
        async with self._sessions.begin() as session:
            repo = DeliveryRepository(session)
            after = await repo.retry_later(
                row.delivery_id,
                self.replica,
                delay_seconds=delay.total_seconds(),
                error=reason,
                at=self._clock.now(),
            )
            if (
                after is not None
                and announce
                and not after.failure_announced
                and row.kind in ("invoice", "credit_note")
            ):
                await repo.mark_failure_announced(row.delivery_id)
                await self._publish(session, [self._failed(row, reason, retryable=True)])

    async def _refused(self, row: Delivery, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("delivery_refused", delivery_id=row.delivery_id, reason=reason[:300])
        self.metrics.deliveries.labels(kind=row.kind, state="refused").inc()
        async with self._sessions.begin() as session:
            if await DeliveryRepository(session).finish(
                row.delivery_id, self.replica, status="refused", at=self._clock.now(), last_error=reason
            ) and row.kind in ("invoice", "credit_note"):
                await self._publish(session, [self._failed(row, reason, retryable=False)])

    def _failed(self, row: Delivery, reason: str, *, retryable: bool) -> InvoiceDeliveryFailedV1:
        return InvoiceDeliveryFailedV1(
            **_envelope(self._clock),
            invoice_id=row.document_id,
            reason=reason,
            retryable=retryable,
            attempts=max(row.attempts, 1),
            failed_at=self._clock.now(),
        )

    async def _publish(self, session: Session, messages: Sequence[Message]) -> None:
        await enqueue(session, runtime_tables.outbox, [outgoing(m) for m in messages], self._clock)
        self._wake_relay()

    # --- invoices out (I-01, B-20, B-21) -----------------------------------------------------

    async def _deliver_invoice(self, row: Delivery) -> None:
        invoice = InvoiceIssuedV1.model_validate(row.payload)
        if invoice.payer_business_id in self.options.file_payers:
            async with self._sessions.begin() as session:
                await DeliveryRepository(session).finish(
                    row.delivery_id,
                    self.replica,
                    status="file",
                    at=self._clock.now(),
                    last_error=None,
                    hold_reason="by the invoice import file (I-05)",
                )
            return
        partner_id = await self._ensure_customer(invoice)
        product_ids = await self._ensure_products(invoice.lines)
        async with self._sessions() as session:
            first = await DeliveryRepository(session).is_first_invoice(
                invoice.payer_business_id, invoice.invoice_number
            )
        channel = domain.invoice_channel(invoice, first_invoice=first, policy=self.policy)
        hold = domain.approval_hold(channel, first_invoice=first, policy=self.policy)
        body = domain.invoice_body(
            invoice, partner_id=partner_id, channel=channel, product_ids=product_ids, policy=self.policy
        )
        ours = Totals(invoice.total_net, invoice.total_vat, invoice.total_gross)
        await self._hand_over(row, body, ours=ours, hold=hold, partner_id=partner_id, document=invoice)

    async def _hand_over(
        self,
        row: Delivery,
        body: JsonObject,
        *,
        ours: Totals,
        hold: str | None,
        partner_id: int,
        document: InvoiceIssuedV1 | CreditNoteIssuedV1,
        before_done: Callable[[JsonObject], Awaitable[None]] | None = None,
    ) -> JsonObject:
        """POST (once, across crashes) → compare totals → approve → read the status → send.

        `before_done` runs once the invoice is sent and before the delivery is recorded as done,
        so that a crash between them repeats it (a credit note's settlement, idempotent itself).
        """
        p = self.procountor
        number = str(body["originalInvoiceNumber"])
        invoice: JsonObject | None = None
        if row.procountor_invoice_id:
            invoice = await p.get_invoice(int(row.procountor_invoice_id))
        elif row.attempts > 1:
            # An earlier attempt may have died after Procountor accepted the POST: look first.
            invoice = await p.find_invoice_by_original_number(number)
        if invoice is None:
            invoice = await p.create_invoice(body)
            log.info(
                "procountor_invoice_created", delivery_id=row.delivery_id, procountor_invoice_id=invoice["id"]
            )
        pid = int(invoice["id"])
        if not row.procountor_invoice_id:
            async with self._sessions.begin() as session:
                await DeliveryRepository(session).record_progress(
                    row.delivery_id,
                    self.replica,
                    procountor_invoice_id=str(pid),
                    procountor_partner_id=str(partner_id),
                )
        status = str(invoice["status"])
        if status == "UNFINISHED":
            theirs = domain.totals_of_procountor(invoice)
            if domain.totals_differ(ours, theirs):
                await self._totals_mismatch(row, document, invoice, ours, theirs)
                return invoice
            if hold is not None:
                await self._awaiting_approval(row, document, invoice, hold)
                return invoice
            await p.approve_invoice(pid)
            invoice = await p.get_invoice(pid)  # read the status, do not assume it (I-01)
            status = str(invoice["status"])
        if status == "NOT_SENT":
            await p.send_invoice(pid)
            invoice = {**invoice, "status": "SENT"}
            status = "SENT"
        if status not in domain.SENT_STATUSES:
            raise DeliveryRefusedError(
                f"invoice {number} is {status} in Procountor (id {pid}) and cannot be sent"
            )
        if before_done is not None:
            await before_done(invoice)
        await self._delivered(row, document, invoice)
        return invoice

    async def _delivered(
        self, row: Delivery, document: InvoiceIssuedV1 | CreditNoteIssuedV1, invoice: JsonObject
    ) -> None:
        now = self._clock.now()
        pid = str(invoice["id"])
        totals = domain.totals_of_procountor(invoice)
        status = str(invoice["status"])
        async with self._sessions.begin() as session:
            if not await DeliveryRepository(session).finish(
                row.delivery_id,
                self.replica,
                status="delivered",
                at=now,
                procountor_status=status,
                procountor_invoice_id=pid,
                last_error=None,
                hold_reason=None,
            ):
                log.warning("delivery_lease_lost", delivery_id=row.delivery_id)
                return
            await self._save_invoice_state(session, document, invoice, totals)
            await self._publish(
                session,
                [
                    InvoiceDeliveredV1(
                        **_envelope(self._clock),
                        invoice_id=row.document_id,
                        procountor_invoice_id=pid,
                        status=DeliveryStatus.SENT,
                        delivered_at=now,
                    )
                ],
            )
        self.metrics.deliveries.labels(kind=row.kind, state="delivered").inc()
        log.info("delivered", delivery_id=row.delivery_id, procountor_invoice_id=pid, status=status)

    async def _save_invoice_state(
        self,
        session: Session,
        document: InvoiceIssuedV1 | CreditNoteIssuedV1,
        invoice: JsonObject,
        totals: Totals,
    ) -> None:
        status = str(invoice["status"])
        if isinstance(document, InvoiceIssuedV1):
            ids = {
                "invoice_id": document.invoice_id,
                "kind": "invoice",
                "invoice_number": document.invoice_number,
                "payer_name": document.payer_name,
                "invoice_date": document.invoice_date,
                "due_date": document.due_date,
            }
        else:
            ids = {
                "invoice_id": document.credit_note_id,
                "kind": "credit_note",
                "invoice_number": document.credit_note_number,
                "payer_name": document.payer_name,
                "invoice_date": document.credit_date,
                "due_date": document.credit_date,
            }
        await ProcountorInvoiceRepository(session).save(
            **ids,
            procountor_invoice_id=str(invoice["id"]),
            procountor_invoice_number=invoice.get("invoiceNumber"),
            payer_business_id=document.payer_business_id,
            reference_number=document.reference_number,
            total_gross=totals.gross,
            procountor_status=status,
            payment_status=domain.payment_status(status, total=totals.gross, settled=Decimal(0)).value,
            updated_at=self._clock.now(),
        )

    async def _totals_mismatch(
        self,
        row: Delivery,
        document: InvoiceIssuedV1 | CreditNoteIssuedV1,
        invoice: JsonObject,
        ours: Totals,
        theirs: Totals,
    ) -> None:
        """Never silently: the invoice stays unapproved in Procountor for finance (event, metric, list)."""
        number = str(invoice.get("originalInvoiceNumber") or row.invoice_number)
        now = self._clock.now()
        mismatch = InvoiceTotalsMismatchedV1(
            **_envelope(self._clock),
            invoice_id=row.document_id,
            invoice_number=number,
            procountor_invoice_id=str(invoice["id"]),
            ours=TotalsFigures(net=ours.net, vat=ours.vat, gross=ours.gross),
            procountor=TotalsFigures(net=theirs.net, vat=theirs.vat, gross=theirs.gross),
            detected_at=now,
        )
        self.metrics.totals_mismatches.inc()
        log.warning(
            "totals_mismatch", invoice_id=row.document_id, ours=str(ours.gross), procountor=str(theirs.gross)
        )
        reason = (
            f"totals differ: ours {ours.gross}, Procountor {theirs.gross}; approve in Procountor or cancel"
        )
        async with self._sessions.begin() as session:
            if not await DeliveryRepository(session).finish(
                row.delivery_id,
                self.replica,
                status="awaiting_approval",
                at=now,
                hold_reason=reason[:200],
                procountor_status=str(invoice["status"]),
            ):
                return
            await MismatchRepository(session).add(
                invoice_id=row.document_id,
                invoice_number=number,
                procountor_invoice_id=str(invoice["id"]),
                ours=mismatch.ours.model_dump(mode="json"),
                procountor=mismatch.procountor.model_dump(mode="json"),
                detected_at=now,
            )
            await self._save_invoice_state(session, document, invoice, theirs)
            await self._publish(session, [mismatch])

    async def _awaiting_approval(
        self, row: Delivery, document: InvoiceIssuedV1 | CreditNoteIssuedV1, invoice: JsonObject, hold: str
    ) -> None:
        now = self._clock.now()
        async with self._sessions.begin() as session:
            if not await DeliveryRepository(session).finish(
                row.delivery_id,
                self.replica,
                status="awaiting_approval",
                at=now,
                hold_reason=hold,
                procountor_status=str(invoice["status"]),
            ):
                return
            await self._save_invoice_state(session, document, invoice, domain.totals_of_procountor(invoice))
            await self._publish(
                session,
                [
                    InvoiceDeliveredV1(
                        **_envelope(self._clock),
                        invoice_id=row.document_id,
                        procountor_invoice_id=str(invoice["id"]),
                        status=DeliveryStatus.AWAITING_APPROVAL,
                        delivered_at=now,
                    )
                ],
            )

    # --- customers and products (I-02) -------------------------------------------------------

    async def _ensure_customer(self, invoice: InvoiceIssuedV1) -> int:
        """The payer as a Procountor customer: found or created once, our changes pushed (conflict rule)."""
        business_id = invoice.payer_business_id
        async with self._sessions() as session:
            row = await CustomerRepository(session).get(business_id)
        if row is None:
            async with advisory_lock(self._engine, f"procountor-sync:customer:{business_id}"):
                async with self._sessions() as session:
                    row = await CustomerRepository(session).get(business_id)
                if row is None:
                    # An inactive customer is found too (never duplicated); what invoicing holds
                    # is pushed to it: the first sync of a payer makes both sides agree.
                    partner = await self.procountor.find_business_partner_by_identifier(business_id)
                    known_contact = None if partner is None else domain.customer_of_partner(partner).contact
                    ours = domain.customer_of_invoice(invoice, contact=known_contact)
                    if partner is None:
                        partner = await self.procountor.create_business_partner(
                            domain.partner_body(ours, business_id)
                        )
                    elif not domain.is_active(partner):
                        # Found by the search for inactive ones: reactivated, never invoiced as it is.
                        partner = await self.procountor.replace_business_partner(
                            int(partner["id"]), domain.reactivated_partner(ours, partner)
                        )
                        log.info("customer_reactivated", business_id=business_id, partner_id=partner["id"])
                    elif domain.customer_of_partner(partner) != ours:
                        partner = await self.procountor.replace_business_partner(
                            int(partner["id"]), domain.partner_update(ours, partner)
                        )
                    await self._save_customer(invoice.payer_id, business_id, partner, ours)
                    return int(partner["id"])
        base = CustomerData.from_json(row.base)
        ours = domain.customer_of_invoice(invoice, contact=base.contact)
        # An invoice issued before the last sync carries stale data: it is not a change of ours.
        if ours == base or invoice.occurred_at <= row.updated_at:
            return int(row.procountor_partner_id)
        await self._push_customer(business_id, ours)
        return int(row.procountor_partner_id)

    async def _push_customer(
        self,
        business_id: str,
        ours: CustomerData,
        *,
        superseded: Callable[[], Awaitable[bool]] | None = None,
    ) -> str:
        """Our side's billing data to a known Procountor customer by the conflict rule (I-02); what was done.

        Under the customer's advisory lock, so that an invoice and a customer update of one payer
        never read, merge and PATCH the same version at once. The new `version` is stored, so the
        poller does not take our own write for a change made in Procountor (no bounce).
        `superseded` is asked under that lock: a change whose later change was pushed while it
        waited for the lock would otherwise push its older values over the newer ones.
        """
        async with advisory_lock(self._engine, f"procountor-sync:customer:{business_id}"):
            if superseded is not None and await superseded():
                return SUPERSEDED
            async with self._sessions() as session:
                row = await CustomerRepository(session).get(business_id)
            if row is None:
                return "not in Procountor yet: created with the payer's first invoice"
            base = CustomerData.from_json(row.base)
            if ours == base:
                return "Procountor holds it already"
            partner = await self.procountor.get_business_partner(int(row.procountor_partner_id))
            merge = domain.merge_customer(base, ours, domain.customer_of_partner(partner))
            if merge.push:
                partner = await self.procountor.replace_business_partner(
                    int(partner["id"]), domain.partner_update(merge.result, partner)
                )
                log.info("customer_pushed", business_id=business_id, conflicts=sorted(merge.conflicts))
            async with self._sessions.begin() as session:
                await CustomerRepository(session).save(
                    business_id=business_id,
                    payer_id=row.payer_id,
                    procountor_partner_id=row.procountor_partner_id,
                    version=str(partner.get("version")),
                    base=merge.result.as_json(),
                    updated_at=self._clock.now(),
                )
                if merge.procountor_changed:
                    await self._publish(
                        session, [self._customer_changed(row.payer_id, business_id, partner, merge.result)]
                    )
        if merge.conflicts:
            return f"pushed; changed on both sides, Procountor's value kept: {', '.join(sorted(merge.conflicts))}"
        return "pushed" if merge.push else "nothing of ours to push"

    async def _update_customer(self, row: Delivery) -> None:
        """I-02: a change of the payer's billing data on our side reaches Procountor now, not with its next invoice.

        The latest change of a payer wins: an older one retried after a newer one is superseded.
        """
        change = ContractChangedV1.model_validate(row.payload)
        ours = domain.customer_of_contract(change)

        async def newer_change_exists() -> bool:
            async with self._sessions() as session:
                return await DeliveryRepository(session).newer_customer_update(
                    change.business_id, row.delivery_id, change.occurred_at
                )

        if ours is None:
            note = "no billing data of the payer's own contract"
        else:
            note = await self._push_customer(change.business_id, ours, superseded=newer_change_exists)
        async with self._sessions.begin() as session:
            await DeliveryRepository(session).finish(
                row.delivery_id, self.replica, status="delivered", at=self._clock.now(),
                last_error=None if note == "pushed" else note,  # what was done instead, as due dates do
            )  # fmt: skip
        self.metrics.deliveries.labels(kind=row.kind, state="delivered").inc()
        log.info("customer_updated", delivery_id=row.delivery_id, outcome=note)

    async def _save_customer(
        self, payer_id: str, business_id: str, partner: JsonObject, base: CustomerData
    ) -> None:
        async with self._sessions.begin() as session:
            await CustomerRepository(session).save(
                business_id=business_id,
                payer_id=payer_id,
                procountor_partner_id=str(partner["id"]),
                version=str(partner.get("version")),
                base=base.as_json(),
                updated_at=self._clock.now(),
            )

    def _customer_changed(
        self, payer_id: str, business_id: str, partner: JsonObject, data: CustomerData
    ) -> CustomerChangedInProcountorV1:
        einvoice = (
            EInvoiceAddress(address=data.einvoice_address, operator=data.einvoice_operator)
            if data.einvoice_address and data.einvoice_operator
            else None
        )
        return CustomerChangedInProcountorV1(
            **_envelope(self._clock),
            payer_id=payer_id,
            procountor_customer_id=str(partner["id"]),
            business_id=business_id,
            changed_at=self._clock.now(),
            company_name=data.name[:80] or "-",
            billing_address=PostalAddress(
                street=data.address.street,
                postal_code=data.address.postal_code,
                city=data.address.city,
                country_code=data.address.country_code,
            ),
            billing_channel=data.channel,
            einvoice_address=einvoice,
            billing_email=data.email,
        )

    async def _ensure_products(self, lines: Sequence[Any]) -> dict[str, int]:
        """Price-list products as Procountor products; rows carry their id (I-02)."""
        by_code = {ln.product_code: ln for ln in lines}
        async with self._sessions() as session:
            known = await ProductRepository(session).ids(by_code)
        for code, line in by_code.items():
            if code in known:
                continue
            async with advisory_lock(self._engine, f"procountor-sync:product:{code}"):
                async with self._sessions() as session:
                    again = await ProductRepository(session).ids([code])
                if code in again:
                    known[code] = again[code]
                    continue
                ours = domain.product_of_line(line)
                found = await self.procountor.find_product_by_code(code)
                product = found or await self.procountor.create_product(domain.product_body(ours))
                base = domain.product_of_procountor(product) if found else ours
                async with self._sessions.begin() as session:
                    await ProductRepository(session).save(
                        product_code=code,
                        procountor_product_id=str(product["id"]),
                        version=str(product.get("version")),
                        base=base.as_json(),
                        updated_at=self._clock.now(),
                    )
                known[code] = int(product["id"])
        return known

    # --- credit notes, due dates, refunds (B-06, B-23) -----------------------------------------

    async def _deliver_credit_note(self, row: Delivery) -> None:
        note = CreditNoteIssuedV1.model_validate(row.payload)
        async with self._sessions() as session:
            original = await ProcountorInvoiceRepository(session).get(note.credited_invoice_id)
            credited_delivery = await DeliveryRepository(session).of_invoice(note.credited_invoice_id)
        if original is None or credited_delivery is None:
            raise WaitingError(
                f"the credited invoice {note.credited_invoice_number} is not in Procountor yet"
            )
        credited = InvoiceIssuedV1.model_validate(credited_delivery.payload)
        partner_id = await self._ensure_customer(credited)
        product_ids = await self._ensure_products(note.lines)
        body = domain.credit_invoice_body(
            note,
            credited,
            partner_id=partner_id,
            credited_procountor_number=original.procountor_invoice_number,
            product_ids=product_ids,
            policy=self.policy,
        )
        ours = Totals(-note.total_net, -note.total_vat, -note.total_gross)

        async def settle(credit: JsonObject) -> None:
            await self._settle_credit(note, int(original.procountor_invoice_id), int(credit["id"]), original)

        await self._hand_over(
            row, body, ours=ours, hold=None, partner_id=partner_id, document=note, before_done=settle
        )

    async def _settle_credit(
        self, note: CreditNoteIssuedV1, original_id: int, credit_id: int, original: InvoiceState
    ) -> None:
        """Offset the credit invoice against the original (CREDIT_NOTE); what is left is owed back
        (invoicing records that refund, B-06).

        Each offset carries the credit note's number in its description, so a retry after a crash
        recognises what is done (Procountor has no idempotency keys).
        """
        p = self.procountor
        description = domain.credit_offset_description(note.credit_note_number)
        on_original = [
            e for e in await p.list_payment_events(original_id) if e.get("description") == description
        ]
        if on_original:
            offset = Decimal(str(on_original[0]["amount"]))
            own = [on_original[0]]
        else:
            events = await p.list_payment_events(original_id)
            paid = sum((Decimal(str(e["amount"])) for e in events), Decimal(0))
            left = max(Decimal(original.total_gross) - paid, Decimal(0))
            offset = min(note.total_gross, left)
            own = []
            if offset > 0:
                own.append(
                    await p.mark_paid(
                        original_id,
                        {
                            "paymentDate": note.credit_date.isoformat(),
                            "amount": offset,
                            "currency": note.currency,
                            "description": description,
                            "paymentMethodType": "CREDIT_NOTE",
                        },
                    )
                )
        on_credit = [e for e in await p.list_payment_events(credit_id) if e.get("description") == description]
        if offset > 0 and not on_credit:
            own.append(
                await p.mark_paid(
                    credit_id,
                    {
                        "paymentDate": note.credit_date.isoformat(),
                        "amount": -offset,
                        "currency": note.currency,
                        "description": description,
                        "paymentMethodType": "CREDIT_NOTE",
                    },
                )
            )
        async with self._sessions.begin() as session:
            for event, pid in ((e, original_id if Decimal(str(e["amount"])) > 0 else credit_id) for e in own):
                await self._record_payments(session, str(pid), [event], own=True)
        # What the credit exceeds the open amount by was paid already: invoicing records that
        # refund (B-06, its one list) and we note it in Procountor like any other.

    async def _move_due_date(self, row: Delivery) -> None:
        """B-23: the new due date in Procountor, so that its reminders use it."""
        moved = InvoiceDueDateMovedV1.model_validate(row.payload)
        async with self._sessions() as session:
            state = await ProcountorInvoiceRepository(session).get(moved.invoice_id)
        if state is None:
            raise WaitingError(f"invoice {moved.invoice_number} is not in Procountor yet")
        pid = int(state.procountor_invoice_id)
        invoice = await self.procountor.get_invoice(pid)
        status = str(invoice["status"])
        note = None
        if status in ("PAID", "MARKED_PAID", "INVALIDATED", "DELETED"):
            note = f"nothing to move: the invoice is {status}"
        else:
            payment = dict(invoice["paymentInfo"])
            payment["dueDate" if status == "UNFINISHED" else "newDueDate"] = moved.new_due_date.isoformat()
            await self.procountor.update_invoice(pid, {**invoice, "paymentInfo": payment})
        async with self._sessions.begin() as session:
            if note is None:
                await ProcountorInvoiceRepository(session).update(
                    moved.invoice_id, due_date=moved.new_due_date
                )
            await DeliveryRepository(session).finish(
                row.delivery_id,
                self.replica,
                status="delivered",
                at=self._clock.now(),
                last_error=note,
                procountor_invoice_id=str(pid),
                procountor_status=status,
            )

    async def _note_refund(self, row: Delivery) -> None:
        """B-06: a refund is noted on its Procountor invoice; finance returns the money.

        The refund itself — its amount, its status, who marked it paid back — is invoicing's (the
        one refund list, `GET /refunds` there); this delivery's state is the note's. Paying out
        through Procountor's payment API needs a person's two-factor confirmation (reference §3),
        so the money goes by finance's hand; the note is where Procountor's users see it.
        """
        refund = RefundRecordedV1.model_validate(row.payload)
        outcome = None
        if refund.procountor_invoice_id:
            pid = int(refund.procountor_invoice_id)
            # Notes are read and written whole: two refunds of one invoice, one at a time, or
            # the second write loses the first's line.
            async with advisory_lock(self._engine, f"procountor-sync:invoice-notes:{pid}"):
                invoice = await self.procountor.get_invoice(pid)
                notes = str(invoice.get("notes") or "")
                if domain.refund_marker(refund.refund_id) not in notes:
                    line = domain.refund_note_line(refund)
                    await self.procountor.set_invoice_notes(pid, (notes + "\n" + line).strip()[:10_000])
        else:
            outcome = "no Procountor invoice to note it on (it is on invoicing's refund list)"
        async with self._sessions.begin() as session:
            await DeliveryRepository(session).finish(
                row.delivery_id, self.replica, status="delivered", at=self._clock.now(), last_error=outcome,
                procountor_invoice_id=refund.procountor_invoice_id,
            )  # fmt: skip

    # --- payments back (I-03, B-06) ------------------------------------------------------------

    async def _record_payments(
        self,
        session: Session,
        procountor_invoice_id: str,
        events: Sequence[JsonObject],
        *,
        own: bool = False,
    ) -> None:
        """Record payment events once each; publish the payer's payments and the invoice's new state."""
        invoices = ProcountorInvoiceRepository(session)
        state = await invoices.by_procountor_id(procountor_invoice_id, lock=True)
        if state is None:
            return  # not one of ours
        now = self._clock.now()
        rows = []
        for e in events:
            kind = str(e.get("type") or "")
            rows.append(
                {
                    "procountor_payment_id": str(e["id"]),
                    "procountor_invoice_id": procountor_invoice_id,
                    "invoice_id": state.invoice_id,
                    "event_type": kind,
                    "amount": Decimal(str(e["amount"])),
                    "payment_date": e["paymentDate"],
                    "own": own,
                    "published": not own
                    and kind in domain.CUSTOMER_PAYMENT_TYPES
                    and Decimal(str(e["amount"])) > 0,
                    "received_at": now,
                }
            )
        for r in rows:
            if isinstance(r["payment_date"], str):
                r["payment_date"] = date.fromisoformat(r["payment_date"])
        payments = PaymentRepository(session)
        fresh = await payments.add(rows)
        messages: list[Message] = []
        for r in rows:
            if r["procountor_payment_id"] in fresh and r["published"]:
                messages.append(
                    PaymentReceivedV1(
                        **_envelope(self._clock),
                        procountor_payment_id=r["procountor_payment_id"],
                        procountor_invoice_id=procountor_invoice_id,
                        invoice_id=state.invoice_id,
                        payer_business_id=state.payer_business_id,
                        amount=r["amount"],
                        payment_date=r["payment_date"],
                        reference_number=state.reference_number,
                    )
                )
                self.metrics.payments.inc()
        if fresh:
            messages += await self._refresh_state(
                session, state, procountor_status=None, settled=await payments.settled(procountor_invoice_id)
            )
        if messages:
            await self._publish(session, messages)

    async def _refresh_state(
        self,
        session: Session,
        state: InvoiceState,
        *,
        procountor_status: str | None,
        settled: Decimal | None,
    ) -> list[Message]:
        status_name = procountor_status or state.procountor_status
        paid = state.settled if settled is None else settled
        total = Decimal(state.total_gross)
        status = domain.payment_status(status_name, total=total, settled=paid)
        if (
            status.value == state.payment_status
            and paid == state.settled
            and status_name == state.procountor_status
        ):
            return []
        await ProcountorInvoiceRepository(session).update(
            state.invoice_id,
            payment_status=status.value,
            settled=paid,
            procountor_status=status_name,
            updated_at=self._clock.now(),
        )
        if status.value == state.payment_status and paid == state.settled:
            return []
        return [
            InvoicePaymentStatusChangedV1(
                **_envelope(self._clock),
                invoice_id=state.invoice_id,
                procountor_invoice_id=state.procountor_invoice_id,
                status=status,
                procountor_status=status_name,
                paid_amount=paid,
                open_amount=domain.open_amount(total, paid),
                changed_at=self._clock.now(),
            )
        ]

    async def receive_webhook(self, *, headers: Mapping[str, str], body: bytes) -> str:
        """A Procountor webhook: HMAC-verified, inside the replay window, once; payments recorded.

        Returns `accepted` or `ignored`; raises `WebhookRefusedError` for a forged or replayed one.
        """
        if self._webhook_secret is None or not self._webhook_secret.get_secret_value():
            raise WebhookRefusedError("webhooks are not configured")
        timestamp = headers.get("x-procountor-timestamp")
        signature = headers.get("x-procountor-signature")
        refusal = domain.webhook_refusal(
            secret=self._webhook_secret.get_secret_value().encode(),
            timestamp=timestamp,
            signature=signature,
            body=body,
            now_unix=self._clock.now().timestamp(),
            tolerance=self.options.webhook_tolerance_seconds,
        )
        if refusal is not None:
            self.metrics.webhooks_refused.labels(reason=refusal).inc()
            raise WebhookRefusedError(refusal)
        try:
            message = json.loads(body, parse_float=Decimal)
            event_type = str(message["eventType"])
            payload = message.get("payload") or {}
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRefusedError("not a Procountor webhook body") from exc
        assert signature is not None
        async with self._sessions.begin() as session:
            if not await WebhookReceiptRepository(session).first_time(
                domain.signature_key(signature), event_type, self._clock.now()
            ):
                self.metrics.webhooks_refused.labels(reason="replay").inc()
                raise WebhookRefusedError("replay")
            if event_type == "INVOICE_PAYMENT_CREATED" and "invoiceId" in payload:
                await self._record_payments(session, str(payload["invoiceId"]), [payload])
                return "accepted"
        return "ignored"

    # --- the polling backstop ----------------------------------------------------------------

    async def run_polling(self) -> None:
        """Every `poll_seconds`: payments and states, customers, products, held invoices; one replica at a time."""
        while True:
            try:
                await self.poll_once()
                self._warnings.recovered("poll_failed")
            except Exception:
                self._warnings.warning("poll_failed", exc_info=True)
            await asyncio.sleep(self.options.poll_seconds)

    async def measure_deliveries(self) -> None:
        """`procountor_deliveries_pending{state}` from the table, run by every replica (all say the same)."""
        async with self._sessions() as session:
            pending = await DeliveryRepository(session).pending_by_state()
        for state, count in pending.items():
            self.metrics.pending.labels(state=state).set(count)

    async def poll_once(self) -> None:
        async with advisory_lock(self._engine, "procountor-sync:poll", wait=False) as mine:
            if not mine:
                return
            await self.reconcile_invoices()
            await self.poll_customers()
            await self.poll_products()
            await self.check_awaiting_approval()
            async with self._sessions.begin() as session:
                await WebhookReceiptRepository(session).forget_before(
                    self._clock.now() - timedelta(seconds=2 * self.options.webhook_tolerance_seconds)
                )

    async def _watermark(self, name: str) -> str:
        async with self._sessions() as session:
            return await WatermarkRepository(session).get(name) or FIRST_WATERMARK

    async def reconcile_invoices(self) -> None:
        """Invoices whose `version` moved (a payment, an invalidation): their payment events and status."""
        since = await self._watermark("invoices")
        changed = await self.procountor.invoices_changed_since(since)
        async with self._sessions() as session:
            ours = await ProcountorInvoiceRepository(session).known_ids([str(i["id"]) for i in changed])
        for item in changed:
            pid = str(item["id"])
            if pid not in ours:
                continue
            events = (
                await self.procountor.list_payment_events(int(pid))
                if item.get("status") != "UNFINISHED"
                else []
            )
            async with self._sessions.begin() as session:
                if events:
                    await self._record_payments(session, pid, events)
                state = await ProcountorInvoiceRepository(session).by_procountor_id(pid, lock=True)
                if state is not None:
                    messages = await self._refresh_state(
                        session,
                        state,
                        procountor_status=str(item["status"]),
                        settled=await PaymentRepository(session).settled(pid),
                    )
                    if messages:
                        await self._publish(session, messages)
        if changed:
            async with self._sessions.begin() as session:
                await WatermarkRepository(session).set("invoices", max(str(i["version"]) for i in changed))

    async def poll_customers(self) -> None:
        """Customers changed in Procountor (there is no webhook for them): published once each (I-02)."""
        since = await self._watermark("customers")
        changed = await self.procountor.business_partners_changed_since(since)
        if not changed:
            return
        versions = {str(p["id"]): str(p["version"]) for p in changed}
        async with self._sessions() as session:
            known = await CustomerRepository(session).by_partner_ids(list(versions))
        for row in known:
            if versions[row.procountor_partner_id] == row.version:
                continue  # our own write, or seen already
            partner = await self.procountor.get_business_partner(int(row.procountor_partner_id))
            theirs = domain.customer_of_partner(partner)
            async with self._sessions.begin() as session:
                current = (await CustomerRepository(session).by_partner_ids([row.procountor_partner_id]))[0]
                if current.version == str(partner["version"]):
                    continue
                base = CustomerData.from_json(current.base)
                await CustomerRepository(session).save(
                    business_id=current.business_id,
                    payer_id=current.payer_id,
                    procountor_partner_id=current.procountor_partner_id,
                    version=str(partner["version"]),
                    base=theirs.as_json(),
                    updated_at=self._clock.now(),
                )
                if theirs != base:
                    await self._publish(
                        session,
                        [self._customer_changed(current.payer_id, current.business_id, partner, theirs)],
                    )
                    log.info("customer_changed_in_procountor", business_id=current.business_id)
        async with self._sessions.begin() as session:
            await WatermarkRepository(session).set("customers", max(versions.values()))

    async def poll_products(self) -> None:
        """Products changed in Procountor: told to the price-list owners, never applied to prices (B-07)."""
        since = await self._watermark("products")
        changed = await self.procountor.list_products(type="SALES", versionStartDate=since)
        if not changed:
            return
        by_id = {str(p["id"]): p for p in changed}
        async with self._sessions.begin() as session:
            for row in await ProductRepository(session).by_product_ids(list(by_id)):
                product = by_id[row.procountor_product_id]
                if str(product.get("version")) == row.version:
                    continue
                theirs = domain.product_of_procountor(product)
                fields = domain.product_changes(ProductData.from_json(row.base), theirs)
                await ProductRepository(session).save(
                    product_code=row.product_code,
                    procountor_product_id=row.procountor_product_id,
                    version=str(product.get("version")),
                    base=theirs.as_json(),
                    updated_at=self._clock.now(),
                )
                if fields:
                    await self._publish(
                        session,
                        [
                            ProductChangedInProcountorV1(
                                **_envelope(self._clock),
                                product_code=row.product_code,
                                procountor_product_id=row.procountor_product_id,
                                name=theirs.name[:100] or "-",
                                unit_price=theirs.unit_price,
                                unit=theirs.unit,
                                vat_rate=theirs.vat_rate,
                                active=theirs.active,
                                changed_fields=fields,
                                changed_at=self._clock.now(),
                            )
                        ],
                    )
            await WatermarkRepository(session).set("products", max(str(p["version"]) for p in changed))

    async def check_awaiting_approval(self) -> None:
        """Invoices held for finance: approved in Procountor → sent by us; invalidated → cancelled."""
        async with self._sessions() as session:
            held = await DeliveryRepository(session).awaiting_approval(limit=200)
        for row in held:
            if not row.procountor_invoice_id:
                continue
            invoice = await self.procountor.get_invoice(int(row.procountor_invoice_id))
            status = str(invoice["status"])
            if status == "UNFINISHED":
                continue
            async with self._sessions.begin() as session:
                repo = DeliveryRepository(session)
                if status in ("INVALIDATED", "DELETED"):
                    done = await repo.set_status(
                        row.delivery_id,
                        expect=("awaiting_approval",),
                        at=self._clock.now(),
                        status="cancelled",
                        last_error=f"{status} in Procountor",
                        changed_by="procountor",
                    )
                    if done is not None and row.kind in ("invoice", "credit_note"):
                        await self._publish(
                            session, [self._failed(row, f"{status} in Procountor", retryable=False)]
                        )
                else:
                    # Finance approved it: the delivery worker sends it (one owner, the lease).
                    await repo.requeue(
                        row.delivery_id, by="procountor (approved by finance)", at=self._clock.now()
                    )

    # --- operators ---------------------------------------------------------------------------

    async def cancel(self, delivery_id: str, *, by: str, reason: str | None = None) -> Delivery | None:
        """An operator gives a delivery up; audited in `delivery_actions` in the same transaction."""
        why = f"cancelled by {by}" + (f": {reason}" if reason else "")
        async with self._sessions.begin() as session:
            repo = DeliveryRepository(session)
            now = self._clock.now()
            row = await repo.set_status(
                delivery_id,
                expect=("pending", "refused", "awaiting_approval"),
                at=now,
                status="cancelled",
                changed_by=by,
                last_error=why[:2000],
                leased_by=None,
                leased_until=None,
            )
            if row is not None:
                await repo.record_action(
                    delivery_id, action="cancel", actor=by, reason=reason, status_after=row.status, at=now
                )
            if row is not None and row.kind in ("invoice", "credit_note"):
                await self._publish(session, [self._failed(row, why, retryable=False)])
        if row is not None:
            log.info("delivery_cancelled", delivery_id=delivery_id, by=by, reason=(reason or "")[:300])
        return row

    async def requeue(self, delivery_id: str, *, by: str, reason: str | None = None) -> Delivery | None:
        """An operator has a delivery tried again now; audited in `delivery_actions` in the same transaction."""
        async with self._sessions.begin() as session:
            repo = DeliveryRepository(session)
            now = self._clock.now()
            row = await repo.requeue(delivery_id, by=by, at=now)
            if row is not None:
                await repo.record_action(
                    delivery_id, action="requeue", actor=by, reason=reason, status_after=row.status, at=now
                )
        if row is not None:
            log.info("delivery_requeued", delivery_id=delivery_id, by=by)
        return row

    def today(self) -> date:
        """The calendar day in Helsinki on the injected clock (the overdue view's default)."""
        return today_in_helsinki(self._clock)


class WebhookRefusedError(Exception):
    """A webhook request that is not Procountor's, or not for the first time."""
