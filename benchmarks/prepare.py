"""Generate, publish and insert-ceiling in a child process, so that the measured process holds none of the data."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from benchmarks import ceilings
from benchmarks.workload import Expected, generate


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
    published: ceilings.Timed
    inserts: ceilings.InsertCeilings


def prepare(
    *, events: int, environments: int, seed: int, bootstrap: str, libpq_url: str, batch_rows: int
) -> Prepared:
    """Run in a child process: build the workload, publish it, measure ceiling B on its voucher rows."""
    started = time.perf_counter()
    workload = generate(events, environments, seed=seed)
    generate_seconds = time.perf_counter() - started
    topics: dict[str, int] = {}
    for record in workload.records:
        topics[record.topic] = topics.get(record.topic, 0) + 1

    async def run() -> tuple[ceilings.Timed, ceilings.InsertCeilings]:
        published = await ceilings.publish(bootstrap, workload.records)
        inserts = await ceilings.raw_insert(libpq_url, workload.voucher_rows, batch_rows=batch_rows)
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
