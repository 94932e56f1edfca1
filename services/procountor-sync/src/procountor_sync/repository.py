"""Procountor-sync's persistence: every SQL statement of the service, one repository class per table.

Scheduling times (leases, retries, the rate limit) are on the database's clock, shared by every
replica; business times (events, audit) come from the injected clock and are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import fields
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import DateTime, Row, and_, case, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from procountor_sync import tables as t
from procountor_sync.records import (
    Delivery,
    DeliveryAction,
    HourEntry,
    InvoiceState,
    Mismatch,
    SyncedCustomer,
    SyncedProduct,
)

_D = t.deliveries.c
_P = t.procountor_invoices.c
_NOW = func.now()
R = TypeVar("R", Delivery, DeliveryAction, InvoiceState, SyncedCustomer, SyncedProduct, Mismatch, HourEntry)


#: The engine advisory locks and the throttle open their own connections on; use cases name it by
#: this alias (they never import SQLAlchemy, issue 9).
Engine = AsyncEngine


def _record(kind: type[R], row: Row[Any]) -> R:
    """A row as the record use cases and routes see (field for field by column name)."""
    values = row._mapping
    return kind(**{f.name: values[f.name] for f in fields(kind)})


def _maybe(kind: type[R], row: Row[Any] | None) -> R | None:
    return None if row is None else _record(kind, row)


def _seconds(value: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, literal(value))


#: The delivery columns a kind may leave out (a customer update or refund note is about no invoice).
_OPTIONAL_DELIVERY_COLUMNS: dict[str, Any] = {
    "invoice_id": None,
    "invoice_number": None,
    "payer_business_id": None,
}


class DeliveryRepository:
    """The work queue of things to hand over to Procountor."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """New deliveries, due now; one already known (a redelivered event) is left as it is."""
        # Every row names the same columns: a multi-row INSERT takes its columns from the first
        # row, so a refund note (no invoice) ahead of a credit note in one batch would otherwise
        # drop the credit note's invoice id and number. In chunks: PostgreSQL takes at most 32,767
        # parameters a statement.
        for start in range(0, len(rows), 1000):
            values = [
                {**_OPTIONAL_DELIVERY_COLUMNS, **r, "next_attempt_at": _NOW}
                for r in rows[start : start + 1000]
            ]
            await self._session.execute(insert(t.deliveries).values(values).on_conflict_do_nothing())

    async def lease(self, *, replica: str, limit: int, lease_seconds: float) -> list[Delivery]:
        """Take up to `limit` due deliveries: pending and due, not leased, or leased by a dead replica."""
        due = (
            select(_D.delivery_id)
            .where(
                _D.status == "pending",
                _D.next_attempt_at <= _NOW,
                or_(_D.leased_until.is_(None), _D.leased_until < _NOW),
            )
            .order_by(_D.next_attempt_at, _D.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self._session.execute(
            update(t.deliveries)
            .where(_D.delivery_id.in_(due.scalar_subquery()))
            .values(leased_by=replica, leased_until=_NOW + _seconds(lease_seconds), attempts=_D.attempts + 1)
            .returning(*t.deliveries.c)
        )
        return [_record(Delivery, r) for r in result.all()]

    async def renew(self, *, replica: str, ids: Sequence[str], lease_seconds: float) -> None:
        """The heartbeat: a live replica keeps its leases; a dead one's expire within `lease_seconds`."""
        if ids:
            await self._session.execute(
                update(t.deliveries)
                .where(_D.delivery_id.in_(ids), _D.leased_by == replica)
                .values(leased_until=_NOW + _seconds(lease_seconds))
            )

    async def record_progress(self, delivery_id: str, replica: str, **values: Any) -> None:
        """Write a step's result at once (e.g. the Procountor id right after the POST)."""
        await self._session.execute(
            update(t.deliveries)
            .where(_D.delivery_id == delivery_id, _D.leased_by == replica)
            .values(**values)
        )

    async def finish(
        self, delivery_id: str, replica: str, *, status: str, at: dt.datetime, **values: Any
    ) -> bool:
        """Release the lease with an outcome; False if the lease was lost meanwhile (another replica has it)."""
        result = await self._session.execute(
            update(t.deliveries)
            .where(_D.delivery_id == delivery_id, _D.leased_by == replica)
            .values(status=status, leased_by=None, leased_until=None, updated_at=at, **values)
            .returning(_D.delivery_id)
        )
        return result.first() is not None

    async def newer_customer_update(
        self, business_id: str, delivery_id: str, occurred_at: dt.datetime
    ) -> bool:
        """Whether a later change of this customer is queued or done (the older one is superseded)."""
        later = await self._session.scalar(
            select(_D.delivery_id)
            .where(
                _D.kind == "customer",
                _D.payer_business_id == business_id,
                _D.delivery_id != delivery_id,
                _D.payload["occurred_at"].astext.cast(DateTime(timezone=True)) > occurred_at,
            )
            .limit(1)
        )
        return later is not None

    async def retry_later(
        self, delivery_id: str, replica: str, *, delay_seconds: float, error: str, at: dt.datetime
    ) -> Delivery | None:
        result = await self._session.execute(
            update(t.deliveries)
            .where(_D.delivery_id == delivery_id, _D.leased_by == replica)
            .values(
                leased_by=None,
                leased_until=None,
                last_error=error,
                next_attempt_at=_NOW + _seconds(delay_seconds),
                updated_at=at,
            )
            .returning(*t.deliveries.c)
        )
        return _maybe(Delivery, result.first())

    async def mark_failure_announced(self, delivery_id: str) -> None:
        await self._session.execute(
            update(t.deliveries).where(_D.delivery_id == delivery_id).values(failure_announced=True)
        )

    async def get(self, delivery_id: str) -> Delivery | None:
        return _maybe(
            Delivery,
            (await self._session.execute(select(t.deliveries).where(_D.delivery_id == delivery_id))).first(),
        )

    async def of_invoice(self, invoice_id: str, kind: str = "invoice") -> Delivery | None:
        return _maybe(
            Delivery,
            (
                await self._session.execute(
                    select(t.deliveries).where(_D.invoice_id == invoice_id, _D.kind == kind)
                )
            ).first(),
        )

    async def listing(
        self, *, status: str | None, kind: str | None, limit: int, after: str | None
    ) -> list[Delivery]:
        query = select(t.deliveries).order_by(_D.delivery_id).limit(limit)
        if status is not None:
            query = query.where(_D.status == status)
        if kind is not None:
            query = query.where(_D.kind == kind)
        if after is not None:
            query = query.where(_D.delivery_id > after)
        return [_record(Delivery, r) for r in (await self._session.execute(query)).all()]

    async def counts(self) -> dict[tuple[str, str], int]:
        rows = await self._session.execute(
            select(_D.kind, _D.status, func.count()).group_by(_D.kind, _D.status)
        )
        return {(kind, status): n for kind, status, n in rows.tuples()}

    async def failing(self) -> int:
        """Pending deliveries that failed at least once (the summary's figure of stuck work)."""
        return int(
            await self._session.scalar(
                select(func.count()).where(_D.status == "pending", _D.last_error.is_not(None))
            )
            or 0
        )

    async def pending_by_state(self) -> dict[str, int]:
        """Deliveries not done, for `/metrics`: queued, retrying (last attempt failed), refused, awaiting approval."""
        state = case(
            (and_(_D.status == "pending", _D.last_error.is_(None)), "queued"),
            (_D.status == "pending", "retrying"),
            else_=_D.status,
        )
        rows = await self._session.execute(
            select(state, func.count())
            .where(_D.status.in_(("pending", "refused", "awaiting_approval")))
            .group_by(state)
        )
        counts = {"queued": 0, "retrying": 0, "refused": 0, "awaiting_approval": 0}
        counts.update({str(k): int(n) for k, n in rows.tuples()})
        return counts

    async def awaiting_approval(self, limit: int) -> list[Delivery]:
        return [
            _record(Delivery, r)
            for r in (
                await self._session.execute(
                    select(t.deliveries)
                    .where(
                        _D.status == "awaiting_approval",
                        or_(_D.leased_until.is_(None), _D.leased_until < _NOW),
                    )
                    .order_by(_D.updated_at)
                    .limit(limit)
                )
            ).all()
        ]

    async def set_status(
        self, delivery_id: str, *, expect: Iterable[str], at: dt.datetime, **values: Any
    ) -> Delivery | None:
        """An operator's or a poller's change, only from the expected statuses; the delivery after it."""
        result = await self._session.execute(
            update(t.deliveries)
            .where(_D.delivery_id == delivery_id, _D.status.in_(list(expect)))
            .values(updated_at=at, **values)
            .returning(*t.deliveries.c)
        )
        return _maybe(Delivery, result.first())

    async def requeue(self, delivery_id: str, *, by: str, at: dt.datetime) -> Delivery | None:
        return await self.set_status(
            delivery_id,
            expect=("pending", "refused", "cancelled", "awaiting_approval"),
            at=at,
            status="pending",
            next_attempt_at=_NOW,
            leased_by=None,
            leased_until=None,
            changed_by=by,
            hold_reason=None,
        )

    async def record_action(
        self,
        delivery_id: str,
        *,
        action: str,
        actor: str,
        reason: str | None,
        status_after: str,
        at: dt.datetime,
    ) -> None:
        """One operator's requeue or cancel, in the caller's transaction (the action's own)."""
        await self._session.execute(
            insert(t.delivery_actions).values(
                delivery_id=delivery_id,
                action=action,
                actor=actor,
                reason=reason,
                status_after=status_after,
                at=at,
            )
        )

    async def actions(self, delivery_id: str) -> list[DeliveryAction]:
        """The delivery's requeues and cancels, oldest first."""
        rows = await self._session.execute(
            select(t.delivery_actions)
            .where(t.delivery_actions.c.delivery_id == delivery_id)
            .order_by(t.delivery_actions.c.id)
        )
        return [_record(DeliveryAction, r) for r in rows.all()]

    async def is_first_invoice(self, payer_business_id: str, invoice_number: str) -> bool:
        """B-20: no earlier invoice (by number) of this payer reached procountor-sync."""
        earlier = await self._session.scalar(
            select(func.count()).where(
                _D.kind == "invoice",
                _D.payer_business_id == payer_business_id,
                or_(
                    func.length(_D.invoice_number) < len(invoice_number),
                    and_(
                        func.length(_D.invoice_number) == len(invoice_number),
                        _D.invoice_number < invoice_number,
                    ),
                ),
            )
        )
        return not earlier


class ProcountorInvoiceRepository:
    """Our invoices as they stand in Procountor."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def save(self, **values: Any) -> None:
        statement = insert(t.procountor_invoices).values(**values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[_P.invoice_id],
                set_={k: statement.excluded[k] for k in values if k not in ("invoice_id", "settled")},
            )
        )

    async def get(self, invoice_id: str) -> InvoiceState | None:
        query = select(t.procountor_invoices).where(_P.invoice_id == invoice_id)
        return _maybe(InvoiceState, (await self._session.execute(query)).first())

    async def by_procountor_id(
        self, procountor_invoice_id: str, *, lock: bool = False
    ) -> InvoiceState | None:
        query = select(t.procountor_invoices).where(_P.procountor_invoice_id == procountor_invoice_id)
        if lock:
            query = query.with_for_update()
        return _maybe(InvoiceState, (await self._session.execute(query)).first())

    async def known_ids(self, procountor_invoice_ids: Sequence[str]) -> set[str]:
        if not procountor_invoice_ids:
            return set()
        rows = await self._session.execute(
            select(_P.procountor_invoice_id).where(_P.procountor_invoice_id.in_(procountor_invoice_ids))
        )
        return set(rows.scalars())

    async def update(self, invoice_id: str, **values: Any) -> None:
        await self._session.execute(
            update(t.procountor_invoices).where(_P.invoice_id == invoice_id).values(**values)
        )

    async def overdue(self, *, as_of: dt.date, payer_business_id: str | None) -> list[InvoiceState]:
        """Sent invoices past their due date with money still open, oldest first (for dunning)."""
        query = (
            select(t.procountor_invoices)
            .where(
                _P.kind == "invoice",
                _P.due_date < as_of,
                _P.payment_status.in_(("open", "partly_paid")),
                _P.total_gross > _P.settled,
            )
            .order_by(_P.payer_business_id, _P.due_date, _P.invoice_number)
        )
        if payer_business_id is not None:
            query = query.where(_P.payer_business_id == payer_business_id)
        return [_record(InvoiceState, r) for r in (await self._session.execute(query)).all()]


class PaymentRepository:
    """Procountor's payment events, each recorded once."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """Record payment events; returns the ids seen for the first time."""
        if not rows:
            return set()
        result = await self._session.execute(
            insert(t.payments)
            .values(list(rows))
            .on_conflict_do_nothing()
            .returning(t.payments.c.procountor_payment_id)
        )
        return set(result.scalars())

    async def settled(self, procountor_invoice_id: str) -> Decimal:
        value = await self._session.scalar(
            select(func.coalesce(func.sum(t.payments.c.amount), 0)).where(
                t.payments.c.procountor_invoice_id == procountor_invoice_id
            )
        )
        return Decimal(value or 0)


class CustomerRepository:
    """Customers as last synced (the base of the three-way merge)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, business_id: str) -> SyncedCustomer | None:
        query = select(t.customers).where(t.customers.c.business_id == business_id)
        return _maybe(SyncedCustomer, (await self._session.execute(query)).first())

    async def by_partner_ids(self, partner_ids: Sequence[str]) -> list[SyncedCustomer]:
        if not partner_ids:
            return []
        query = (
            select(t.customers).where(t.customers.c.procountor_partner_id.in_(partner_ids)).with_for_update()
        )
        return [_record(SyncedCustomer, r) for r in (await self._session.execute(query)).all()]

    async def save(self, **values: Any) -> None:
        statement = insert(t.customers).values(**values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.customers.c.business_id],
                set_={k: statement.excluded[k] for k in values if k != "business_id"},
            )
        )


class ProductRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def ids(self, codes: Iterable[str]) -> dict[str, int]:
        rows = await self._session.execute(
            select(t.products.c.product_code, t.products.c.procountor_product_id).where(
                t.products.c.product_code.in_(sorted(set(codes)))
            )
        )
        return {code: int(pid) for code, pid in rows.tuples()}

    async def by_product_ids(self, product_ids: Sequence[str]) -> list[SyncedProduct]:
        if not product_ids:
            return []
        query = (
            select(t.products).where(t.products.c.procountor_product_id.in_(product_ids)).with_for_update()
        )
        return [_record(SyncedProduct, r) for r in (await self._session.execute(query)).all()]

    async def save(self, **values: Any) -> None:
        statement = insert(t.products).values(**values)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.products.c.product_code],
                set_={k: statement.excluded[k] for k in values if k != "product_code"},
            )
        )


class MismatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, **values: Any) -> None:
        await self._session.execute(insert(t.mismatches).values(**values).on_conflict_do_nothing())

    async def listing(self) -> list[Mismatch]:
        query = select(t.mismatches).order_by(t.mismatches.c.detected_at)
        return [_record(Mismatch, r) for r in (await self._session.execute(query)).all()]


class HourEntryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def upsert(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """A newer version of an entry (by `recorded_at`) replaces the older one."""
        if not rows:
            return
        latest: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            if row["entry_id"] not in latest or row["recorded_at"] >= latest[row["entry_id"]]["recorded_at"]:
                latest[row["entry_id"]] = row
        statement = insert(t.hour_entries).values(list(latest.values()))
        columns = [c.name for c in t.hour_entries.c if c.name != "entry_id"]
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.hour_entries.c.entry_id],
                set_={c: statement.excluded[c] for c in columns},
                where=t.hour_entries.c.recorded_at <= statement.excluded.recorded_at,
            )
        )

    async def of_month(self, first: dt.date, last: dt.date) -> list[HourEntry]:
        h = t.hour_entries.c
        query = select(t.hour_entries).where(h.work_date >= first, h.work_date <= last)
        rows = await self._session.execute(query.order_by(h.employee_id, h.work_date))
        return [_record(HourEntry, r) for r in rows.all()]


class WebhookReceiptRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def first_time(self, signature_key: str, event_type: str, at: dt.datetime) -> bool:
        """True the first time a signature is seen; a replay answers False."""
        result = await self._session.execute(
            insert(t.webhook_receipts)
            .values(signature_key=signature_key, event_type=event_type, received_at=at)
            .on_conflict_do_nothing()
            .returning(t.webhook_receipts.c.signature_key)
        )
        return result.first() is not None

    async def forget_before(self, at: dt.datetime) -> None:
        """Receipts older than the replay window protect nothing: the timestamp check refuses those."""
        await self._session.execute(delete(t.webhook_receipts).where(t.webhook_receipts.c.received_at < at))


class WatermarkRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, name: str) -> str | None:
        value = await self._session.scalar(select(t.watermarks.c.value).where(t.watermarks.c.name == name))
        return None if value is None else str(value)

    async def set(self, name: str, value: str) -> None:
        statement = insert(t.watermarks).values(name=name, value=value)
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.watermarks.c.name],
                set_={"value": func.greatest(t.watermarks.c.value, statement.excluded.value)},
            )
        )


class CredentialRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, name: str) -> bytes | None:
        value = await self._session.scalar(
            select(t.credentials.c.ciphertext).where(t.credentials.c.name == name)
        )
        return None if value is None else bytes(value)

    async def stored(self, name: str) -> tuple[str, dt.datetime] | None:
        """Who stored the credential and when (never the credential itself)."""
        row = (
            await self._session.execute(
                select(t.credentials.c.created_by, t.credentials.c.created_at).where(
                    t.credentials.c.name == name
                )
            )
        ).first()
        return None if row is None else (str(row.created_by), row.created_at)

    async def put(self, name: str, ciphertext: bytes, *, by: str, at: dt.datetime) -> None:
        statement = insert(t.credentials).values(
            name=name, ciphertext=ciphertext, created_by=by, created_at=at
        )
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=[t.credentials.c.name],
                set_={"ciphertext": ciphertext, "created_by": by, "created_at": at},
            )
        )

    async def start_login(self, state: str, *, by: str, valid_seconds: float) -> None:
        await self._session.execute(delete(t.login_states).where(t.login_states.c.expires_at < _NOW))
        await self._session.execute(
            insert(t.login_states).values(
                state=state, started_by=by, expires_at=_NOW + _seconds(valid_seconds)
            )
        )

    async def finish_login(self, state: str) -> str | None:
        """Who started the login with this `state`, once (CSRF protection); None if unknown or expired."""
        result = await self._session.execute(
            delete(t.login_states)
            .where(t.login_states.c.state == state, t.login_states.c.expires_at >= _NOW)
            .returning(t.login_states.c.started_by)
        )
        found = result.scalar()
        return None if found is None else str(found)


class PostgresThrottle:
    """One rate limit for every replica (20 requests/s per API client): request slots in PostgreSQL.

    `limit` rows per API client. A request takes a free slot and holds it from its start until
    `window` after its answer, on the database's clock. Two uses of one slot therefore reach
    Procountor at least `window` apart, so no `window` ever sees more than `limit` requests, however
    late the network delivers them. A slot of a replica that died mid-request frees itself after
    `in_flight_seconds`. In a replica one coroutine at a time asks the database for a slot; taking
    and giving back are one autocommit statement each, on connections of their own (the rate
    limit is on the hot path of every request).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        client_id: str,
        limit: int,
        window: float = 1.0,
        in_flight_seconds: float = 60.0,
    ) -> None:
        self._engine = engine
        self._client_id = client_id
        self._limit = limit
        self._window = window
        self._in_flight = in_flight_seconds
        self._turn = asyncio.Lock()
        self._giving_back = asyncio.Lock()
        self._connections: dict[str, AsyncConnection] = {}
        self._ready = False

    async def _connection(self, role: str) -> AsyncConnection:
        connection = self._connections.get(role)
        if connection is None or connection.closed:
            connection = await (await self._engine.connect()).execution_options(isolation_level="AUTOCOMMIT")
            self._connections[role] = connection
        return connection

    async def _run(self, role: str, statement: Any, params: Mapping[str, Any]) -> Any:
        connection = await self._connection(role)
        try:
            return await connection.execute(statement, params)
        except Exception:
            # A broken connection is replaced on the next call; the request fails and is retried.
            self._connections.pop(role, None)
            with contextlib.suppress(Exception):
                await connection.close()
            raise

    async def ensure_slots(self) -> None:
        async with self._turn:
            await self._run(
                "acquire",
                text(
                    "INSERT INTO procountor_sync.rate_limit_slots (client_id, slot, free_at)"
                    " SELECT :client, n, now() FROM generate_series(0, :limit - 1) AS n ON CONFLICT DO NOTHING"
                ),
                {"client": self._client_id, "limit": self._limit},
            )
            await self._run(
                "acquire",
                text(
                    "DELETE FROM procountor_sync.rate_limit_slots WHERE client_id = :client AND slot >= :limit"
                ),
                {"client": self._client_id, "limit": self._limit},
            )
        self._ready = True

    async def close(self) -> None:
        for connection in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await connection.close()
        self._connections.clear()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if not self._ready:
            await self.ensure_slots()
        slot = await self._acquire()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the in-flight hold frees it anyway
                await self._release(slot)

    async def _acquire(self) -> int:
        async with self._turn:
            while True:
                row = (
                    await self._run(
                        "acquire",
                        text(
                            "WITH free AS (SELECT slot FROM procountor_sync.rate_limit_slots"
                            " WHERE client_id = :client AND free_at <= clock_timestamp()"
                            " ORDER BY free_at LIMIT 1 FOR UPDATE SKIP LOCKED),"
                            " taken AS (UPDATE procountor_sync.rate_limit_slots AS s"
                            " SET free_at = clock_timestamp() + make_interval(secs => :hold)"
                            " FROM free WHERE s.client_id = :client AND s.slot = free.slot RETURNING s.slot)"
                            " SELECT (SELECT slot FROM taken) AS slot,"
                            " (SELECT EXTRACT(EPOCH FROM min(free_at) - clock_timestamp())"
                            "  FROM procountor_sync.rate_limit_slots WHERE client_id = :client) AS wait"
                        ),
                        {"client": self._client_id, "hold": self._in_flight},
                    )
                ).first()
                if row is not None and row.slot is not None:
                    return int(row.slot)
                wait = float(row.wait) if row is not None and row.wait is not None else 0.01
                await asyncio.sleep(min(max(wait, 0.002), 1.0))

    async def _release(self, slot: int) -> None:
        async with self._giving_back:
            await self._run(
                "release",
                text(
                    "UPDATE procountor_sync.rate_limit_slots"
                    " SET free_at = clock_timestamp() + make_interval(secs => :window)"
                    " WHERE client_id = :client AND slot = :slot"
                ),
                {"client": self._client_id, "slot": slot, "window": self._window},
            )


@contextlib.asynccontextmanager
async def advisory_lock(engine: AsyncEngine, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
    """A session-level advisory lock, e.g. per business ID while a customer is looked up and created.

    Two replicas never create the same customer twice; no transaction stays open across the HTTP
    calls, and a dead process's lock goes with its connection. With `wait=False` it yields whether
    it got the lock (one poller at a time).
    """
    async with engine.connect() as connection:
        conn = await connection.execution_options(isolation_level="AUTOCOMMIT")
        lock = func.pg_advisory_lock if wait else func.pg_try_advisory_lock
        got = bool(await conn.scalar(select(lock(func.hashtext(key))))) if not wait else True
        if wait:
            await conn.execute(select(lock(func.hashtext(key))))
        try:
            yield got
        finally:
            if got:
                await conn.execute(select(func.pg_advisory_unlock(func.hashtext(key))))
