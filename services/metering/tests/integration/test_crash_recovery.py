"""A metering consumer killed after its database commit but before its offset commit does not double count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from billing_contracts.registry import TOPICS, all_topic_names
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.infra import KafkaTarget, async_url, create_database, drop_database, ensure_topics
from devstack.testing import Publisher, migrate, wait_until
from metering.domain import HELSINKI
from metering.repository import SqlAlchemyUsageRepository
from metering.tables import runtime_tables
from service_runtime.database import create_engine, session_factory

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("crashing_consumer.py")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=HELSINKI)
OCT_5 = datetime(2026, 10, 5, 10, 0, tzinfo=HELSINKI)
EVENTS = 10
MAX_RECORDS = 4  # fewer than EVENTS: the killed batch leaves work for the restart


class ConsumerProcess:
    """One run of crashing_consumer.py; its log goes to a file, its summary line to stdout."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self._process = process
        self.log = log

    @classmethod
    async def start(cls, env: dict[str, str], log: Path, *args: str) -> ConsumerProcess:
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=sink
            )
        return cls(process, log)

    async def exit_code(self, *, within: float) -> int:
        try:
            return await asyncio.wait_for(self._process.wait(), timeout=within)
        except TimeoutError:
            raise AssertionError(f"consumer still running after {within}s; log:\n{self.log_tail()}") from None

    async def stop(self) -> dict[str, float]:
        """SIGTERM, wait for the graceful stop, return the process's metrics summary."""
        self._process.terminate()
        stdout, _ = await asyncio.wait_for(self._process.communicate(), timeout=30)
        assert self._process.returncode == 0, f"exit {self._process.returncode}; log:\n{self.log_tail()}"
        for line in stdout.decode().splitlines():
            if line.startswith("summary "):
                summary: dict[str, float] = json.loads(line.removeprefix("summary "))
                return summary
        raise AssertionError(f"no summary printed; log:\n{self.log_tail()}")

    def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest_asyncio.fixture
async def crash_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """A metering database of this test's own: the module's in-process consumer shares nothing with it."""
    name = f"crash_{uuid.uuid4().hex[:12]}"
    url = async_url(create_database(postgres_admin_url, name))
    try:
        await migrate(url, "metering:migrations")
        yield url
    finally:
        drop_database(postgres_admin_url, name)


def created(environment_id: str, voucher_id: str) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=OCT_5,
        producer="test",
        environment_id=environment_id,
        voucher_id=voucher_id,
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=OCT_5,
    )


async def test_a_consumer_killed_before_its_offset_commit_and_restarted_does_not_double_count(
    kafka: KafkaTarget, crash_database: str, unique_name: str, tmp_path: Path
) -> None:
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    environment = f"env-crash-{uuid.uuid4().hex[:8]}"
    events = [created(environment, f"v{n}") for n in range(EVENTS)]
    event_ids = [e.event_id for e in events]
    async with Publisher(kafka) as publisher:
        await publisher.publish(*events)

    engine = create_engine(crash_database, pool_size=2)
    sessions = session_factory(engine)

    async def vouchers(env: str) -> int:
        async with sessions() as session:
            usage = await SqlAlchemyUsageRepository(session).usage("2026-10", [env])
        return usage[env].vouchers

    async def processed() -> int:
        t = runtime_tables.processed_events
        async with sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(t).where(t.c.event_id.in_(event_ids))
            )
        return int(count or 0)

    async def all_counted() -> bool:
        return await vouchers(environment) == EVENTS and await processed() == EVENTS

    env = os.environ | {
        "METERING_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "METERING_KAFKA_ENABLE_IDEMPOTENCE": str(kafka.enable_idempotence).lower(),
        "METERING_DATABASE_URL": crash_database,
        "METERING_DATABASE_POOL_SIZE": "2",
        "METERING_KAFKA_CONSUMER_INSTANCES": "1",  # one consumer: a restart waits for one session timeout
        "METERING_KAFKA_CONSUMER_MAX_RECORDS": str(MAX_RECORDS),
        "METERING_OUTBOX_IDLE_SECONDS": "0.2",
        "METERING_LOG_FORMAT": "json",
    }
    args = ("--group", f"metering-crash-{unique_name}", "--now", NOW.isoformat())
    log = tmp_path / "consumer.log"
    runs: list[ConsumerProcess] = []
    try:
        runs.append(await ConsumerProcess.start(env, log, *args, "--crash-on-environment", environment))
        assert await runs[-1].exit_code(within=60) == 137
        committed_before_the_kill = await processed()
        # The killed batch reached the database (claims and counts together) and was not all of the work.
        assert 1 <= committed_before_the_kill <= MAX_RECORDS
        assert await vouchers(environment) == committed_before_the_kill

        runs.append(await ConsumerProcess.start(env, log, *args))
        await wait_until(all_counted, within=60, interval=0.5, what=f"{EVENTS} vouchers counted")
        summary = await runs[-1].stop()
        # Its offsets were never committed, so the killed batch came again, and was skipped as already processed.
        assert summary["duplicates"] >= committed_before_the_kill
        assert await vouchers(environment) == EVENTS
        assert await processed() == EVENTS

        runs.append(await ConsumerProcess.start(env, log, *args))
        marker = f"env-marker-{uuid.uuid4().hex[:8]}"
        async with Publisher(kafka) as publisher:
            await publisher.publish(created(marker, "m1"))

        async def marker_counted() -> bool:
            return await vouchers(marker) == 1

        await wait_until(marker_counted, within=60, interval=0.5, what="marker voucher counted")
        await runs[-1].stop()
        assert await vouchers(environment) == EVENTS
        assert await processed() == EVENTS
    finally:
        for run in runs:
            run.kill()
        with contextlib.suppress(Exception):
            for run in runs:
                await run.exit_code(within=10)
        await engine.dispose()
