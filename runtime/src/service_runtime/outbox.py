"""Transactional outbox: messages are written with the change they announce, then relayed to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message, wire_json
from billing_contracts.registry import max_message_bytes, topic_for
from service_runtime.bulk import insert_rows
from service_runtime.clock import Clock
from service_runtime.hygiene import visible
from service_runtime.metrics import ServiceMetrics
from service_runtime.ratelimit import RateLimitedLog
from service_runtime.tracing import inject_headers

log = structlog.get_logger(__name__)


#: Set in `session.info` when a transaction added outbox rows, so the relay is woken only then.
OUTBOX_WRITTEN = "outbox_written"


@dataclass(frozen=True)
class OutgoingMessage:
    """One record to publish."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes the topic's limit counts: key, value and headers."""
        return (
            len(self.value)
            + len(self.key or b"")
            + sum(len(k) + len(v.encode()) for k, v in self.headers.items())
        )


class MessageTooLargeError(ValueError):
    """A message larger than its topic accepts: it is never written to the outbox (it could never be sent)."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"a message of {size:,} bytes is larger than the {limit:,} bytes {topic} accepts")
        self.topic = topic
        self.size = size
        self.limit = limit


class UnpublishableError(Exception):
    """Some messages of a batch can never be published (the broker refused them for good).

    Raised by a `Publisher` after every other message of the batch was acknowledged; `reasons`
    maps the position of each refused message in the batch to why.
    """

    def __init__(self, reasons: dict[int, str]) -> None:
        super().__init__(f"{len(reasons)} message(s) refused for good")
        self.reasons = reasons


def check_size(message: OutgoingMessage) -> None:
    """Raise `MessageTooLargeError` when `message` is larger than its topic accepts."""
    limit = max_message_bytes(message.topic)
    size = message.size
    if size > limit:
        raise MessageTooLargeError(message.topic, size, limit)


def outgoing(message: Message, *, topic: str | None = None) -> OutgoingMessage:
    """Wrap a contract for the outbox, on its registry topic and keyed by its aggregate id."""
    return OutgoingMessage(
        topic=topic or topic_for(type(message)),
        key=message.kafka_key(),
        value=wire_json(message),
        # The trace context of the transaction that writes the message, not of the relay that publishes it.
        headers=dict(
            inject_headers({"message_type": message.message_type, "event_id": str(message.event_id)})
        ),
    )


async def enqueue(
    session: AsyncSession, table: Table, messages: Sequence[OutgoingMessage], clock: Clock
) -> None:
    """Add messages to the outbox inside the caller's transaction, in order, in one statement.

    A message larger than its topic accepts raises `MessageTooLargeError`, so that the
    transaction that produced it fails with that reason instead of leaving a row no relay can send.
    """
    if not messages:
        return
    for m in messages:
        check_size(m)
    session.info[OUTBOX_WRITTEN] = True
    now = clock.now()
    await insert_rows(
        session,
        table,
        [
            {
                "topic": m.topic,
                "key": m.key,
                "value": m.value,
                "headers": json.dumps(m.headers),
                "created_at": now,
            }
            for m in messages
        ],
        conflict="",
    )


class Publisher(Protocol):
    """Where the relay sends messages: all of them acknowledged by the broker, or an exception.

    `UnpublishableError` says which messages the broker refused for good (every other one was
    acknowledged); any other exception is taken as transient and the batch is sent again.
    """

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None: ...


class OutboxRelay:
    """Publishes outbox rows in id order and deletes them once the broker acknowledged them.

    Delivery is at least once: a crash between the broker's acknowledgement and the delete
    publishes the rows again, and every consumer de-duplicates by event id. Several replicas
    may relay at once: `FOR UPDATE SKIP LOCKED` gives each its own rows.

    One row never blocks the others: a row that can never be published (larger than its topic
    accepts, refused by the broker for good) is parked with the reason (`parked_at`,
    `parked_reason`, metric `outbox_parked`) and the relay goes on. A broker or database outage
    is retried with backoff, its warning logged at most once a minute.
    """

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        publisher: Publisher,
        metrics: ServiceMetrics,
        clock: Clock,
        batch_size: int = 1000,
        idle_seconds: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._wakeup = asyncio.Event()
        self._warnings = RateLimitedLog(log)

    def wake(self) -> None:
        """Tell the relay that new rows were committed."""
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; return how many were handled (published or parked)."""
        t = self._table
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
                    .where(t.c.parked_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            messages = [
                OutgoingMessage(topic=r.topic, key=r.key, value=r.value, headers=r.headers) for r in rows
            ]
            # Rows written before enqueue checked sizes, or under a larger limit, are parked unsent.
            parked: dict[int, str] = {}
            for i, m in enumerate(messages):
                try:
                    check_size(m)
                except MessageTooLargeError as exc:
                    parked[i] = str(exc)
            sendable = [i for i in range(len(messages)) if i not in parked]
            if sendable:
                try:
                    await self._publisher.publish_all([messages[i] for i in sendable])
                except UnpublishableError as exc:
                    parked |= {sendable[j]: reason for j, reason in exc.reasons.items()}
            published = [rows[i].id for i in range(len(rows)) if i not in parked]
            if published:
                await session.execute(delete(t).where(t.c.id.in_(published)))
            for i, reason in parked.items():
                await self._park(session, rows[i].id, messages[i], reason)
        self._metrics.outbox_published.inc(len(published))
        return len(rows)

    async def _park(self, session: AsyncSession, row_id: int, message: OutgoingMessage, reason: str) -> None:
        t = self._table
        now = self._clock.now()
        shown = visible(reason, limit=1000)
        await session.execute(update(t).where(t.c.id == row_id).values(parked_at=now, parked_reason=shown))
        self._metrics.outbox_parked(topic=message.topic).inc()
        # Once per row: a parked row is never read by the relay again.
        log.error(
            "outbox_row_parked",
            outbox_id=row_id,
            topic=message.topic,
            event_id=message.headers.get("event_id"),
            size=message.size,
            reason=shown,
        )

    async def run(self) -> None:
        """Relay until cancelled; a broker or database failure is logged (rate-limited) and retried with backoff."""
        backoff = 0.5
        while True:
            try:
                published = await self.publish_pending()
                backoff = 0.5
                self._warnings.recovered("outbox_relay_failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._warnings.warning(
                    "outbox_relay_failed", exc_info=True, error=type(exc).__name__, retry_in_s=backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if published == self._batch_size:
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_seconds)
