"""Helpers for integration tests: run a service in process, publish contracts, read topics, wait."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from billing_contracts.base import Message, wire_json
from billing_contracts.registry import topic_for
from devstack.infra import KafkaTarget
from service_runtime.migrations import upgrade

T = TypeVar("T")


async def migrate(database_url: str, script_location: str) -> None:
    """Migrate one service's schema to head (Alembic runs its own event loop, so in a thread)."""
    await asyncio.to_thread(upgrade, database_url, script_location)


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, auth: httpx.Auth | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Run a service's lifespan (consumers, relay) and give an HTTP client bound to it.

    `auth` (e.g. `DevIssuer.all_roles_auth()`) gives every request of the client a bearer token.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service", auth=auth) as client:
            yield client


class Publisher:
    """Publishes contracts or raw bytes the way an outside producer would."""

    def __init__(self, kafka: KafkaTarget) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=kafka.enable_idempotence, acks="all"
        )

    async def __aenter__(self) -> Publisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, *messages: Message) -> None:
        for message in messages:
            await self._producer.send(
                topic_for(type(message)), value=wire_json(message), key=message.kafka_key()
            )
        await self._producer.flush()

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key)


async def wait_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns a truthy value; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {last!r}")


async def read_topic(
    kafka: KafkaTarget,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    within: float = 30.0,
) -> list[dict[str, Any]]:
    """Read a topic from the beginning (fresh group) until `until(messages)` holds; JSON values."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found.extend(json.loads(r.value) for r in records)
            if until(found):
                return found
        raise AssertionError(f"timed out reading {topic}; got {len(found)} messages")
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def serve_http(app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a loopback port (free, or the one given), in this event loop.

    The app's lifespan is not run here: `running(app)` runs it, when the app has one.
    """
    import uvicorn

    from devstack.broker import free_port

    port = port or free_port(host)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(_started(server), within=10, interval=0.02, what="HTTP server start")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def _started(server: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(server.started)

    return check


async def metric(http: httpx.AsyncClient, name: str, **labels: str) -> float | None:
    """One sample of a service's `/metrics` (Prometheus text), by sample name and labels; None if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    response = await http.get("/metrics")
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
