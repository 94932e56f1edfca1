"""No invoice stranded: real procountor-sync processes killed mid-delivery, Procountor down, 429 storms, one rate limit.

The replicas here run as their own processes (`procountor-sync serve`, delivery workers without
Kafka intake), so a kill is a real SIGKILL; deliveries are queued by the intake use case directly.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from billing_contracts.invoicing import InvoiceIssuedV1
from devstack.infra import KafkaTarget, async_url, create_database, drop_database
from devstack.procountor import CLIENT_ID, EmulatorProcess, SyncReplica
from devstack.testing import migrate, wait_until
from procountor_sync import tables
from procountor_sync.service import DeliveryIntake
from service_runtime.clock import SystemClock

from ..builders import invoice

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2.0


@pytest.fixture(scope="module")
def database(postgres_admin_url: str) -> Iterator[str]:
    name = f"sync_stranded_{uuid.uuid4().hex[:8]}"
    url = async_url(create_database(postgres_admin_url, name))
    yield url
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(rate_limit=20, latency_ms=20) as process:
        yield process


@pytest.fixture
def replicas(database: str, kafka: KafkaTarget, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Any]:
    started: list[SyncReplica] = []

    def start() -> SyncReplica:
        replica = SyncReplica(
            database_url=database,
            bootstrap_servers=kafka.bootstrap_servers,
            enable_idempotence=kafka.enable_idempotence,
            emulator=emulator,
            log=tmp_path / f"replica-{len(started)}.log",
            settings={
                "DELIVERY_LEASE_SECONDS": str(LEASE_SECONDS),
                "DELIVERY_INTERVAL_SECONDS": "0.1",
                "RETRY_INITIAL_SECONDS": "0.2",
                "RETRY_MAX_SECONDS": "1.0",
                "REQUEST_ATTEMPTS": "2",
                "REQUEST_BACKOFF_MAX_SECONDS": "0.2",
                "POLL_INTERVAL_SECONDS": "3600",
            },
        )
        started.append(replica)
        return replica

    yield start
    for replica in started:
        with contextlib.suppress(Exception):
            replica.stop()


async def queue(database: str, *issued: InvoiceIssuedV1) -> None:
    await migrate(database, "procountor_sync:migrations")
    engine = create_async_engine(database)
    async with engine.begin() as connection:
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(bind=connection) as session:
            await DeliveryIntake(SystemClock())(session, list(issued))
    await engine.dispose()


async def deliveries(database: str, *issued: InvoiceIssuedV1) -> list[Any]:
    engine = create_async_engine(database)
    d = tables.deliveries.c
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(tables.deliveries)
                .where(d.invoice_id.in_([i.invoice_id for i in issued]))
                .order_by(d.invoice_id)
            )
        ).all()
    await engine.dispose()
    return list(rows)


def all_delivered(database: str, *issued: InvoiceIssuedV1) -> Any:
    async def check() -> list[Any] | None:
        rows = await deliveries(database, *issued)
        return rows if len(rows) == len(issued) and all(r.status == "delivered" for r in rows) else None

    return check


def times_in_procountor(emulator: EmulatorProcess, issued: InvoiceIssuedV1) -> int:
    return sum(
        i.get("originalInvoiceNumber") == issued.invoice_number for i in emulator.inspect("GET", "/invoices")
    )


async def test_a_replica_killed_between_post_and_recording_it_leaves_no_duplicate_and_no_stranded_invoice(
    database: str, emulator: EmulatorProcess, replicas: Any
) -> None:
    issued = invoice()
    await queue(database, issued)
    # Procountor accepts the POST but its answer never reaches the first replica.
    emulator.inspect(
        "POST", "/faults", {"status": 0, "delaySeconds": 60, "method": "POST", "pathPrefix": "/api/invoices"}
    )
    first = replicas()

    async def posted() -> bool:
        return times_in_procountor(emulator, issued) == 1

    await wait_until(posted, within=30, what="the POST reached Procountor")
    first.kill()
    killed_at = time.monotonic()
    (before,) = await deliveries(database, issued)
    replicas()
    (after,) = await wait_until(
        all_delivered(database, issued), within=30, what="delivered by the other replica"
    )
    taken_up_in = time.monotonic() - killed_at

    assert before.procountor_invoice_id is None  # the kill came before the result was recorded
    assert times_in_procountor(emulator, issued) == 1  # found by originalInvoiceNumber, not posted again
    assert after.attempts == 2
    assert after.procountor_status == "SENT"
    assert taken_up_in < LEASE_SECONDS + 15  # seconds, not the old 5-minute lease


async def test_every_invoice_is_delivered_after_procountor_was_down_longer_than_the_retry_schedule(
    database: str, emulator: EmulatorProcess, replicas: Any
) -> None:
    emulator.stop()
    issued = [invoice() for _ in range(3)]
    await queue(database, *issued)
    replicas()

    async def retried_past_the_cap() -> bool:
        rows = await deliveries(database, *issued)
        # 0.2 s doubling to the 1 s cap: the 6th attempt is past the whole schedule (the old code gave up at 8).
        return all(r.attempts >= 6 and r.status == "pending" for r in rows)

    await wait_until(retried_past_the_cap, within=60, what="attempts past the retry schedule")
    emulator.start()
    rows = await wait_until(all_delivered(database, *issued), within=60, what="every invoice delivered")

    assert [times_in_procountor(emulator, i) for i in issued] == [1, 1, 1]
    assert all("ProcountorUnavailableError" in (r.last_error or "") or r.last_error is None for r in rows)


async def test_a_429_storm_delays_but_neither_loses_nor_duplicates(
    database: str, emulator: EmulatorProcess, replicas: Any
) -> None:
    issued = [invoice() for _ in range(4)]
    emulator.inspect("POST", "/faults", {"status": 429, "times": 30, "delaySeconds": 1})  # Retry-After: 1
    await queue(database, *issued)
    replicas()

    rows = await wait_until(all_delivered(database, *issued), within=90, what="every invoice delivered")

    assert [times_in_procountor(emulator, i) for i in issued] == [1, 1, 1, 1]
    assert max(r.attempts for r in rows) > 1  # the storm was felt


async def test_two_replicas_share_one_rate_limit_that_procountor_never_sees_exceeded(
    database: str, emulator: EmulatorProcess, replicas: Any
) -> None:
    before = sum(emulator.inspect("GET", "/stats")["requestsByClient"].values())
    issued = [invoice() for _ in range(25)]
    await queue(database, *issued)
    replicas()
    replicas()

    await wait_until(all_delivered(database, *issued), within=120, what="every invoice delivered")
    stats = emulator.inspect("GET", "/stats")

    assert stats["rateLimited"] == 0
    assert stats["maxRequestsInWindow"][CLIENT_ID] <= 20
    assert sum(stats["requestsByClient"].values()) - before >= 25 * 4
    assert all(times_in_procountor(emulator, i) == 1 for i in issued)
