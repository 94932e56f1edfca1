"""Generate, publish and insert-ceiling in a child process, so that the measured process holds none of the data."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from benchmarks import ceilings
from benchmarks.workload import Expected, Workload, generate

#: The workload, kept in the worker process between `prepare` and `publish_prepared`.
_workload: Workload | None = None


@dataclass(frozen=True)
class Prepared:
    """What the parent needs of the workload: its size, its expected figures and the setup timings."""

    records: int
    topics: dict[str, int]
    """Records per topic."""
    expected: Expected
    messages_by_type: dict[str, int]
    duplicates: int
    voucher_rows: int
    generate_seconds: float
    published: ceilings.Published | None
    """Set when the workload was published during preparation (backlog mode)."""
    inserts: ceilings.InsertCeilings


def prepare(
    *,
    events: int,
    environments: int,
    seed: int,
    bootstrap: str,
    libpq_url: str,
    batch_rows: int,
    publish: bool,
) -> Prepared:
    """Run in a child process: build the workload, measure ceiling B on its voucher rows, publish it if asked.

    The workload stays in the child, so that `publish_prepared` can publish it later (live mode).
    """
    global _workload  # the worker process's one workload
    started = time.perf_counter()
    workload = _workload = generate(events, environments, seed=seed)
    generate_seconds = time.perf_counter() - started
    topics: dict[str, int] = {}
    for record in workload.records:
        topics[record.topic] = topics.get(record.topic, 0) + 1

    async def run() -> tuple[ceilings.Published | None, ceilings.InsertCeilings]:
        inserts = await ceilings.raw_insert(libpq_url, workload.voucher_rows, batch_rows=batch_rows)
        published = await ceilings.publish(bootstrap, workload.records) if publish else None
        return published, inserts

    published, inserts = asyncio.run(run())
    return Prepared(
        records=len(workload.records),
        topics=topics,
        expected=workload.expected,
        messages_by_type=workload.messages_by_type,
        duplicates=workload.duplicates,
        voucher_rows=len(workload.voucher_rows),
        generate_seconds=generate_seconds,
        published=published,
        inserts=inserts,
    )


def publish_prepared(bootstrap: str) -> ceilings.Published:
    """Run in the same child after `prepare`: publish its workload now."""
    if _workload is None:
        raise RuntimeError("prepare() has not run in this process")
    return asyncio.run(ceilings.publish(bootstrap, _workload.records))
