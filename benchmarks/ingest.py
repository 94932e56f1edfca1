"""The real metering service, in this process, ingesting the published workload; then a month close."""

from __future__ import annotations

import asyncio
import cProfile
import json
import multiprocessing
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from pydantic import SecretStr

from benchmarks.ceilings import Published, TopicOffsets
from benchmarks.machine import peak_rss_bytes, reset_peak_rss, rss_bytes
from benchmarks.report import Report
from benchmarks.workload import B10_KINDS, MONTH, MONTH_END, Expected
from billing_contracts.registry import TOPICS
from devstack.testing import running
from metering.app import create_app
from metering.service import close_month
from metering.settings import MeteringSettings
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory

GROUP = "metering"
GRACE = timedelta(hours=2)
POLL_SECONDS = 0.25
SERVICE_NOW = MONTH_END + timedelta(days=40)


@dataclass(frozen=True)
class EndToEnd:
    records: int
    seconds: float
    """From entering the service's lifespan until every event is stored and every offset committed."""
    startup_seconds: float
    """From entering the lifespan until the group first committed an offset."""
    stop_seconds: float
    rss_before: int
    rss_sampled_peak: int
    rss_kernel_peak: int | None
    """VmHWM after a reset just before the run: the true peak of the run (None if the reset was refused)."""
    consumer_settings: dict[str, object]
    """The service's effective consumer settings (its defaults unless overridden)."""
    replica_rss_peaks: list[int]
    """Peak RSS of each replica that ran in a process of its own."""
    live: bool = False
    """Published while the service ran (from the first publish) rather than read from a backlog."""
    published: Published | None = None
    """The live publish (None in backlog mode)."""

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def steady_rate(self) -> float:
        return self.records / (self.seconds - self.startup_seconds)


async def _joined(app: FastAPI, replicas: int, give_up_after: float) -> None:
    """Wait until this process's consumer holds partitions (its share, with several replicas)."""
    broker = app.state.host.broker
    deadline = time.time() + give_up_after
    while time.time() < deadline:
        assigned = [len(s.consumer.assignment()) for s in broker.subscribers if s.consumer is not None]
        total = sum(t.partitions for t in TOPICS if "metering" in t.consumers)
        if assigned and sum(assigned) > 0 and (replicas == 1 or sum(assigned) < total):
            return
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError("metering's consumer group did not form")


async def _committed(admin: AIOKafkaAdminClient, ends: TopicOffsets) -> TopicOffsets:
    # Partitions are named: Tansu 0.6.0 answers an OffsetFetch for "all partitions" in a form
    # aiokafka cannot decode (the connection is dropped).
    partitions = [TopicPartition(topic, partition) for topic, partition in ends]
    offsets = await admin.list_consumer_group_offsets(GROUP, partitions=partitions)
    return {(tp.topic, tp.partition): int(meta.offset) for tp, meta in offsets.items() if meta.offset >= 0}


async def end_to_end(
    *,
    bootstrap: str,
    sqlalchemy_url: str,
    libpq_url: str,
    ends: TopicOffsets,
    distinct_event_ids: int,
    publish: Callable[[], Coroutine[Any, Any, Published]] | None = None,
    max_records: int | None,
    give_up_after: float,
    profile: Path | None,
    replicas: int = 1,
) -> EndToEnd:
    """Run metering until it has stored every event and committed every offset; time it.

    One replica runs in this process (its memory is measured); `replicas - 1` more run as their
    own processes in the same consumer group, as a Deployment with that many pods would.

    Backlog mode (`publish` None): the records were published before; timed from the service's
    start. Live mode: the service starts and joins its group, then `publish` publishes the
    records; timed from the first publish, and `ends` comes from the broker's acknowledgements.
    """
    settings = MeteringSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_enable_idempotence=False,
        database_url=SecretStr(sqlalchemy_url),
        auto_close=False,
    )
    if max_records:
        settings = settings.model_copy(update={"kafka_consumer_max_records": max_records})
    consumer_settings = {
        name: value
        for name, value in settings.model_dump().items()
        if name.startswith("kafka_consumer_") or name == "database_pool_size"
    }
    # The service's own clock sits after the data month, so no event is "implausibly in the future".
    app = create_app(settings, FixedClock(SERVICE_NOW))
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    peaks: multiprocessing.Queue[int] = context.Queue()
    others = [
        context.Process(target=_replica, args=(settings, stop, peaks), daemon=True)
        for _ in range(replicas - 1)
    ]
    connection = await asyncpg.connect(libpq_url)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    profiler = cProfile.Profile() if profile else None
    publishing: asyncio.Task[Published] | None = None
    try:
        kernel_peak_available = reset_peak_rss()
        rss_before = sampled_peak = rss_bytes()
        if profiler:
            profiler.enable()
        started = time.time()
        first_commit: float | None = None
        for process in others:
            process.start()
        async with running(app):
            if publish is not None:
                # Live: the group has joined before the first record is published; the clock starts then.
                await _joined(app, replicas, give_up_after)
                first_commit = time.time()
                publishing = asyncio.create_task(publish())
            while True:
                await asyncio.sleep(POLL_SECONDS)
                now = time.time()
                sampled_peak = max(sampled_peak, rss_bytes())
                if now - started > give_up_after:
                    raise TimeoutError(f"metering did not finish in {give_up_after:.0f} s")
                if publishing is not None:
                    if not publishing.done():
                        continue
                    published = publishing.result()
                    ends, started = published.ends, published.first_send_at
                committed = await _committed(admin, ends)
                if first_commit is None and committed:
                    first_commit = now
                if any(committed.get(tp, 0) < end for tp, end in ends.items()):
                    continue
                # Offsets are committed after the database transaction, so this holds already; checked anyway.
                stored = await connection.fetchval("SELECT count(*) FROM metering.processed_events")
                if stored >= distinct_event_ids:
                    finished = time.time()
                    break
        stopped = time.time()
        if profiler:
            profiler.disable()
        kernel_peak = peak_rss_bytes() if kernel_peak_available else None
        stop.set()
        replica_peaks = [peaks.get(timeout=60) for _ in others]
        for process in others:
            process.join(timeout=30)
    finally:
        stop.set()
        if publishing is not None and not publishing.done():
            publishing.cancel()
        await admin.close()
        await connection.close()
    records = sum(ends.values())
    if profiler and profile:
        profiler.dump_stats(str(profile))
    return EndToEnd(
        records=records,
        seconds=finished - started,
        # Backlog: start-up and group join until the first commit, inside `seconds`. Live: the
        # join before the first publish, outside `seconds` (then reported as 0 here).
        startup_seconds=max(0.0, (first_commit or finished) - started) if publish is None else 0.0,
        live=publish is not None,
        published=publishing.result() if publishing is not None else None,
        stop_seconds=stopped - finished,
        rss_before=rss_before,
        rss_sampled_peak=sampled_peak,
        rss_kernel_peak=kernel_peak,
        consumer_settings=consumer_settings | {"replicas": replicas},
        replica_rss_peaks=replica_peaks,
    )


def _replica(settings: MeteringSettings, stop: Event, peaks: multiprocessing.Queue[int]) -> None:
    """Another metering process of the same consumer group, until told to stop; reports its peak RSS."""
    reset_peak_rss()
    app = create_app(settings, FixedClock(SERVICE_NOW))

    async def serve() -> None:
        async with running(app):
            # A process-wide event cannot be awaited: wait for it on a thread.
            await asyncio.to_thread(stop.wait)

    asyncio.run(serve())
    peaks.put(peak_rss_bytes() or rss_bytes())


@dataclass(frozen=True)
class MonthClose:
    seconds: float
    environments: int
    closed_now: bool
    error: str | None = None
    """Why the close failed (the benchmark reports it rather than stopping)."""


async def close(sqlalchemy_url: str) -> MonthClose:
    """Close the data month the way the closer does, with a clock just after the month's grace."""
    engine = create_engine(sqlalchemy_url, pool_size=2)
    try:
        clock = FixedClock(MONTH_END + GRACE + timedelta(hours=1))
        started = time.perf_counter()
        try:
            result = await close_month(session_factory(engine), clock, MONTH, grace=GRACE)
        except Exception as exc:
            # SQLAlchemy quotes the whole statement and its parameters: the first line says it.
            first_line = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first_line[:300]}"
            return MonthClose(time.perf_counter() - started, 0, False, reason)
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    return MonthClose(seconds, result.environment_count, result.closed_now)


async def verify(libpq_url: str, expected: Expected, closed: MonthClose, report: Report) -> None:
    """Compare what metering stored and finalized with what the generated data says."""
    c = await asyncpg.connect(libpq_url)
    try:
        processed = await c.fetchval("SELECT count(*) FROM metering.processed_events")
        report.check(
            "every distinct event id processed once",
            processed == expected.distinct_event_ids,
            f"{processed} processed, {expected.distinct_event_ids} distinct generated",
        )
        dead = await c.fetchval("SELECT count(*) FROM metering.dead_letters")
        report.check("no dead letters", dead == 0, f"{dead} dead letters")

        # Created minus voided in the creation month, per month (no void precedes its creation here).
        rows = await c.fetch(
            """
            SELECT month,
                   count(*) - count(*) FILTER (WHERE void_month = month) AS vouchers
            FROM metering.vouchers
            WHERE month IS NOT NULL AND document_kind = ANY($1::text[])
            GROUP BY month ORDER BY month
            """,
            [k.value for k in B10_KINDS],
        )
        stored_by_month = {r["month"]: int(r["vouchers"]) for r in rows}
        report.check(
            "vouchers per month = distinct voucher ids created - same-month voids",
            stored_by_month == expected.vouchers_by_month,
            f"stored {stored_by_month}, expected {expected.vouchers_by_month}",
        )

        rows = await c.fetch(
            "SELECT environment_id, usage FROM metering.finalized_usage WHERE month = $1", MONTH
        )
        finalized = {r["environment_id"]: _json(r["usage"]) for r in rows}
        vouchers = {env: int(u.get("vouchers", 0)) for env, u in finalized.items() if u.get("vouchers")}
        wrong = sum(
            1
            for env in vouchers.keys() | expected.vouchers_by_environment.keys()
            if vouchers.get(env) != expected.vouchers_by_environment.get(env)
        )
        report.check(
            f"finalized {MONTH} vouchers per environment",
            wrong == 0,
            f"{len(expected.vouchers_by_environment)} environments with vouchers, {wrong} differ; "
            f"total {sum(vouchers.values())} vs {sum(expected.vouchers_by_environment.values())} expected",
        )
        payees = sum(int(u.get("payees", 0)) for u in finalized.values())
        report.check(
            f"finalized {MONTH} payees", payees == expected.payees, f"{payees} vs {expected.payees} expected"
        )
        sent = sum(int(u.get("einvoices_sent", 0)) for u in finalized.values())
        report.check(
            f"finalized {MONTH} fee e-invoices sent",
            sent == expected.einvoices_sent,
            f"{sent} vs {expected.einvoices_sent} expected",
        )
        report.check(
            "month close finalized every environment with usage",
            closed.closed_now and closed.environments == expected.environments_with_usage,
            f"month close failed: {closed.error}"
            if closed.error
            else f"{closed.environments} finalized, {expected.environments_with_usage} expected",
        )
    finally:
        await c.close()


def _json(value: object) -> dict[str, Any]:
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise TypeError(f"usage is not an object: {data!r}")
    return data
