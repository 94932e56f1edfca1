"""What the runtime measures by itself: HTTP requests, consumer lag, the outbox, dead letters, and the request id."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka import KafkaBroker
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service_runtime.auth import POLICY_ROUTE_SCOPE_KEY
from service_runtime.clock import Clock
from service_runtime.dead_letters import pending_dead_letters
from service_runtime.metrics import ServiceMetrics
from service_runtime.tables import RuntimeTables
from service_runtime.tracing import server_span

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
#: A caller's request id is kept only if it looks like one (no log injection, bounded size).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: The route label of requests no route matched, so that scanners cannot blow up the label set.
UNMATCHED_ROUTE = "<unmatched>"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestObservation:
    """ASGI middleware: request id (bound in every log line and echoed), trace span, latency by route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        method = scope["method"]
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with (
            structlog.contextvars.bound_contextvars(request_id=request_id),
            server_span(method, headers) as span,
        ):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = (
                    getattr(scope.get("route"), "path", None)
                    or scope.get(POLICY_ROUTE_SCOPE_KEY)
                    or UNMATCHED_ROUTE
                )
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                self.metrics.http_duration.labels(method=method, route=route, status=str(status)).observe(
                    time.perf_counter() - started
                )


async def measure_consumer_lag(broker: KafkaBroker, metrics: ServiceMetrics) -> None:
    """Set `kafka_consumer_lag` for every partition assigned to this process's consumers.

    Lag is the partition's end offset minus the consumer's position (the next offset it will
    fetch). Records already fetched but still being processed count as consumed, so the figure can
    be low by up to one batch; what alerts look at is whether it keeps growing.
    """
    seen: set[tuple[str, ...]] = set()
    for subscriber in broker.subscribers:
        consumer: AIOKafkaConsumer | None = getattr(subscriber, "consumer", None)
        group = getattr(consumer, "_group_id", None) if consumer is not None else None
        if consumer is None or group is None:
            continue
        assigned: set[TopicPartition] = consumer.assignment()
        if not assigned:
            continue
        ends = await consumer.end_offsets(list(assigned))
        for tp in assigned:
            try:
                position = await consumer.position(tp)
            except IllegalStateError:  # not yet positioned after a rebalance: measured next time
                continue
            labels = (str(group), tp.topic, str(tp.partition))
            metrics.consumer_lag.labels(*labels).set(max(0, ends.get(tp, position) - position))
            seen.add(labels)
    # Partitions that moved to another replica in a rebalance are no longer ours to report.
    for gone in _label_sets(metrics.consumer_lag) - seen:
        metrics.consumer_lag.remove(*gone)


def _label_sets(gauge: Any, names: tuple[str, ...] = ("group", "topic", "partition")) -> set[tuple[str, ...]]:
    return {tuple(sample.labels[n] for n in names) for metric in gauge.collect() for sample in metric.samples}


async def measure_outbox(
    sessions: async_sessionmaker[AsyncSession], table: Table, clock: Clock, metrics: ServiceMetrics
) -> None:
    """Set `outbox_backlog` and `outbox_oldest_age_seconds` from one query of the outbox table.

    Parked rows (never to be published until an operator clears `parked_at`) are not backlog;
    they are `outbox_parked_rows`, from the table, so that every replica reports the same.
    """
    async with sessions() as session:
        count, oldest, parked = (
            await session.execute(
                select(
                    func.count().filter(table.c.parked_at.is_(None)),
                    func.min(table.c.created_at).filter(table.c.parked_at.is_(None)),
                    func.count().filter(table.c.parked_at.is_not(None)),
                )
            )
        ).one()
    metrics.outbox_backlog.set(count)
    metrics.outbox_parked_rows.set(parked)
    metrics.outbox_oldest_age.set(0 if oldest is None else max(0.0, (clock.now() - oldest).total_seconds()))


async def measure_dead_letters(
    sessions: async_sessionmaker[AsyncSession], tables: RuntimeTables, metrics: ServiceMetrics
) -> None:
    """Set `dead_letters_pending` from the table (every replica agrees); a kind that is resolved reads 0."""
    pending = await pending_dead_letters(sessions, tables)
    gauge = metrics.dead_letters_pending
    now = {(p.consumer_group, p.topic, p.failure): p.count for p in pending}
    for labels in _label_sets(gauge, ("group", "topic", "failure")) - set(now):
        gauge.labels(*labels).set(0)
    for labels, count in now.items():
        gauge.labels(*labels).set(count)
