"""Transactional outbox: messages are written with the change they announce, then relayed to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message, wire_json
from billing_contracts.registry import topic_for
from service_runtime.bulk import insert_rows
from service_runtime.clock import Clock
from service_runtime.metrics import ServiceMetrics
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
    """Add messages to the outbox inside the caller's transaction, in order, in one statement."""
    if not messages:
        return
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
    """Where the relay sends messages: all of them acknowledged by the broker, or an exception."""

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None: ...


class OutboxRelay:
    """Publishes outbox rows in id order and deletes them once the broker acknowledged them.

    Delivery is at least once: a crash between the broker's acknowledgement and the delete
    publishes the rows again, and every consumer de-duplicates by event id. Several replicas
    may relay at once: `FOR UPDATE SKIP LOCKED` gives each its own rows.
    """

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        publisher: Publisher,
        metrics: ServiceMetrics,
        batch_size: int = 1000,
        idle_seconds: float = 0.5,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._publisher = publisher
        self._metrics = metrics
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Tell the relay that new rows were committed."""
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; return how many were published."""
        t = self._table
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
                    .order_by(t.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            await self._publisher.publish_all(
                [OutgoingMessage(topic=r.topic, key=r.key, value=r.value, headers=r.headers) for r in rows]
            )
            await session.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
        self._metrics.outbox_published.inc(len(rows))
        return len(rows)

    async def run(self) -> None:
        """Relay until cancelled; a broker or database failure is logged and retried with backoff."""
        backoff = 0.5
        while True:
            try:
                published = await self.publish_pending()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_relay_failed", retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if published == self._batch_size:
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_seconds)
