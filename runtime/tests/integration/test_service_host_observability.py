"""A running ServiceHost on the real broker and PostgreSQL: lag, outbox age, HTTP metrics, request ids, traces, liveness."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, redirect_stderr
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import wire_json
from billing_contracts.registry import all_topic_names
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.infra import KafkaTarget, ensure_topics
from devstack.testing import running, wait_until
from service_runtime.auth import public
from service_runtime.clock import FixedClock
from service_runtime.consumer import Rejection
from service_runtime.host import ServiceHost, create_service_app
from service_runtime.logging import configure_logging
from service_runtime.observability import measure_outbox
from service_runtime.outbox import enqueue, outgoing
from service_runtime.settings import ServiceSettings

from .conftest import RuntimeTestService

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    # Once per process: the global provider cannot be replaced, and no other test module sets one.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(provider)


@dataclass
class Gate:
    """Holds the use case until opened, so that records pile up behind it."""

    event: asyncio.Event

    async def __call__(
        self, session: AsyncSession, messages: Sequence[VoucherCreatedV1]
    ) -> Sequence[Rejection]:
        await self.event.wait()
        return []


class Forward:
    """A use case that announces every voucher on an output topic through the outbox."""

    def __init__(self, topic: str, clock: FixedClock, service: RuntimeTestService) -> None:
        self.topic, self.clock, self.service = topic, clock, service

    async def __call__(
        self, session: AsyncSession, messages: Sequence[VoucherCreatedV1]
    ) -> Sequence[Rejection]:
        await enqueue(
            session, self.service.tables.outbox, [outgoing(m, topic=self.topic) for m in messages], self.clock
        )
        return []


def voucher(n: int) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="test",
        environment_id=f"env-{n % 3}",
        voucher_id=f"V{n}",
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=NOW,
    )


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@asynccontextmanager
async def service_host(
    kafka: KafkaTarget, database_url: str, service: RuntimeTestService, use_case: object, topic: str
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient]]:
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.enable_idempotence,
        database_url=SecretStr(database_url),
        metrics_interval_seconds=0.2,
        outbox_idle_seconds=0.1,
    )
    host = ServiceHost(name="metering", settings=settings, clock=FixedClock(NOW), tables=service.tables)
    host.consume({topic: VoucherCreatedV1}, use_case, group=f"metering-{topic}")  # type: ignore[arg-type]
    router = APIRouter()

    @router.get("/environments/{environment_id}/things")
    async def things(environment_id: str) -> dict[str, str]:
        logging.getLogger("aiokafka").warning("a library speaks")
        return {"environment": environment_id}

    policies = {"GET /environments/{environment_id}/things": public("a test route")}
    app = create_service_app(host, title="test", description="test", routers=[router], policies=policies)
    async with running(app) as http:
        yield host, http


async def test_lag_per_partition_grows_while_the_consumer_is_stuck_and_falls_to_zero_after(
    kafka: KafkaTarget, database_url: str, service: RuntimeTestService, unique_name: str
) -> None:
    topic = f"{unique_name}-in"
    await ensure_topics(
        kafka.bootstrap_servers, {topic: 2} | {n: 1 for n in all_topic_names() if "dead-letter" in n}
    )
    gate = Gate(asyncio.Event())
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=kafka.enable_idempotence
    )
    await producer.start()
    try:
        async with service_host(kafka, database_url, service, gate, topic) as (_, http):
            for n in range(3):
                message = voucher(n)
                # Keyed by its environment: a record keyed otherwise is a dead letter (issue 8).
                await producer.send_and_wait(topic, wire_json(message), key=message.kafka_key(), partition=0)

            async def stuck_with_backlog() -> float | None:
                # The first batch is inside the gate; what arrives now waits behind it.
                late = voucher(99)
                await producer.send_and_wait(topic, wire_json(late), key=late.kafka_key(), partition=0)
                lag = samples((await http.get("/metrics")).text, "kafka_consumer_lag")
                key = (("group", f"metering-{topic}"), ("partition", "0"), ("topic", topic))
                return lag.get(key) if lag.get(key, 0) >= 3 else None

            assert await wait_until(stuck_with_backlog, within=30, what="lag on partition 0") >= 3
            gate.event.set()

            async def drained() -> bool:
                lag = samples((await http.get("/metrics")).text, "kafka_consumer_lag")
                return bool(lag) and all(v == 0 for v in lag.values())

            await wait_until(drained, within=30, what="lag back to zero")
    finally:
        gate.event.set()
        await producer.stop()


async def test_outbox_backlog_and_the_age_of_its_oldest_row(service: RuntimeTestService) -> None:
    from service_runtime.metrics import ServiceMetrics

    clock = FixedClock(NOW - timedelta(minutes=7))
    async with service.sessions.begin() as session:
        await enqueue(session, service.tables.outbox, [outgoing(voucher(1)), outgoing(voucher(2))], clock)
    clock.set(NOW)
    metrics = ServiceMetrics("metering")

    await measure_outbox(service.sessions, service.tables.outbox, clock, metrics)

    assert metrics.outbox_backlog._value.get() == 2
    assert metrics.outbox_oldest_age._value.get() == 420.0


async def test_http_requests_are_measured_by_route_template_and_carry_a_request_id_in_every_log_line(
    kafka: KafkaTarget, database_url: str, service: RuntimeTestService, unique_name: str
) -> None:
    topic = f"{unique_name}-in"
    await ensure_topics(kafka.bootstrap_servers, {topic: 1})
    configure_logging("json", "INFO")
    async with service_host(kafka, database_url, service, Gate(asyncio.Event()), topic) as (_, http):
        captured = io.StringIO()
        with redirect_stderr(captured):  # the log handler writes to whatever stderr is now
            first = await http.get("/environments/env-1/things", headers={"X-Request-ID": "req-abc.1"})
            await http.get("/environments/env-2/things")
            await http.get("/no/such/route")
        text = (await http.get("/metrics")).text

    assert first.headers["x-request-id"] == "req-abc.1"
    counts = samples(text, "http_request_duration_seconds_count")
    assert (
        counts[(("method", "GET"), ("route", "/environments/{environment_id}/things"), ("status", "200"))]
        == 2
    )
    assert counts[(("method", "GET"), ("route", "<unmatched>"), ("status", "404"))] == 1
    library_lines = [
        json.loads(line) for line in captured.getvalue().splitlines() if "a library speaks" in line
    ]
    assert library_lines[0]["request_id"] == "req-abc.1"
    assert library_lines[0]["logger"] == "aiokafka"
    assert library_lines[0]["level"] == "warning"


async def test_a_trace_continues_from_the_message_that_caused_it_to_the_message_it_caused(
    kafka: KafkaTarget, database_url: str, service: RuntimeTestService, unique_name: str
) -> None:
    topic_in, topic_out = f"{unique_name}-in", f"{unique_name}-out"
    await ensure_topics(kafka.bootstrap_servers, {topic_in: 1, topic_out: 1})
    clock = FixedClock(NOW)
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=kafka.enable_idempotence
    )
    reader = AIOKafkaConsumer(
        topic_out, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await producer.start()
    await reader.start()
    try:
        async with service_host(kafka, database_url, service, Forward(topic_out, clock, service), topic_in):
            await producer.send_and_wait(
                topic_in,
                wire_json(voucher(1)),
                key=voucher(1).kafka_key(),
                headers=[("traceparent", traceparent.encode())],
            )
            record = await asyncio.wait_for(reader.getone(), timeout=30)
    finally:
        await producer.stop()
        await reader.stop()

    headers = {k: v.decode() for k, v in record.headers}
    assert headers["traceparent"].split("-")[1] == trace_id
    consumer_spans = [s for s in SPANS.get_finished_spans() if s.kind == trace.SpanKind.CONSUMER]
    assert any(format(s.context.trace_id, "032x") == trace_id for s in consumer_spans)


async def test_killing_a_consumer_task_or_the_relay_turns_healthz_red(
    kafka: KafkaTarget, database_url: str, service: RuntimeTestService, unique_name: str
) -> None:
    topic = f"{unique_name}-in"
    await ensure_topics(kafka.bootstrap_servers, {topic: 1})
    async with service_host(kafka, database_url, service, Gate(asyncio.Event()), topic) as (host, http):
        healthy = await http.get("/healthz")
        assert healthy.status_code == 200, healthy.text
        assert healthy.json()["checks"][f"consumer:metering-{topic}"] == "ok"

        for _, subscriber in host._subscribers:
            for task in subscriber.tasks:
                task.cancel()
        await asyncio.sleep(0.1)
        dead = await http.get("/healthz")
        assert dead.status_code == 503
        assert dead.json()["checks"][f"consumer:metering-{topic}"] == "dead: its fetch loop ended"
        assert dead.json()["checks"]["outbox-relay"] == "ok"
        up = samples((await http.get("/metrics")).text, "background_task_up")
        assert up[(("task", f"consumer:metering-{topic}"),)] == 0


async def test_a_dead_outbox_relay_turns_healthz_red(
    kafka: KafkaTarget, database_url: str, service: RuntimeTestService, unique_name: str
) -> None:
    topic = f"{unique_name}-in"
    await ensure_topics(kafka.bootstrap_servers, {topic: 1})
    async with service_host(kafka, database_url, service, Gate(asyncio.Event()), topic) as (host, http):
        relay = next(t for t in host._tasks if t.get_name() == "outbox-relay")
        relay.cancel()
        await asyncio.sleep(0.05)
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["outbox-relay"] == "dead: cancelled"
