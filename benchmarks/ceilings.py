"""Publishing the workload, and the ceilings of this machine: raw consume and raw PostgreSQL inserts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from benchmarks.workload import VOUCHER_COLUMNS, Record, VoucherRow

TopicOffsets = dict[tuple[str, int], int]


@dataclass(frozen=True)
class Timed:
    count: int
    seconds: float
    steady_seconds: float | None = None
    """From the first message to the last, without client start and group join."""

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def steady_rate(self) -> float | None:
        return self.count / self.steady_seconds if self.steady_seconds else None


@dataclass(frozen=True)
class Published:
    timed: Timed
    first_send_at: float
    """Wall-clock time (`time.time()`) just before the first record was handed to the producer."""
    ends: TopicOffsets
    """End offset of every partition written, from the broker's acknowledgements."""


async def publish(bootstrap: str, records: Sequence[Record]) -> Published:
    """Publish every record with a batching producer; return when the broker acknowledged all."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,  # Tansu refuses InitProducerId
        acks="all",
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    ends: TopicOffsets = {}

    def note(acknowledged: list[RecordMetadata]) -> None:
        for meta in acknowledged:
            key = (meta.topic, meta.partition)
            ends[key] = max(ends.get(key, 0), meta.offset + 1)

    try:
        first_send_at = time.time()
        started = time.perf_counter()
        pending: list[asyncio.Future[RecordMetadata]] = []
        for record in records:
            pending.append(await producer.send(record.topic, value=record.value, key=record.key))
            if len(pending) >= 50_000:
                note(await asyncio.gather(*pending))
                pending.clear()
        note(await asyncio.gather(*pending))
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    return Published(Timed(len(records), seconds), first_send_at, ends)


async def raw_consume(
    bootstrap: str, topics: Sequence[str], total: int, *, give_up_after: float
) -> tuple[Timed, TopicOffsets]:
    """Ceiling A: a plain consumer in a fresh group reads every record and only decodes its JSON.

    Also returns each partition's end offset as seen in the records: Tansu 0.6.0 answers
    ListOffsets(latest) with a wrong value (1 for a partition of 150 records), so the consumer's
    `end_offsets` cannot be trusted on the embedded broker.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"benchmark-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    started = time.perf_counter()
    first: float | None = None
    seen = 0
    ends: TopicOffsets = {}
    await consumer.start()
    try:
        while seen < total:
            if time.perf_counter() - started > give_up_after:
                raise TimeoutError(f"raw consume read {seen} of {total} records in {give_up_after:.0f} s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                if first is None:
                    first = time.perf_counter()
                for record in records:
                    json.loads(record.value)
                seen += len(records)
                ends[(tp.topic, tp.partition)] = records[-1].offset + 1
        finished = time.perf_counter()
    finally:
        await consumer.stop()
    return Timed(seen, finished - started, finished - first if first is not None else None), ends


@dataclass(frozen=True)
class InsertCeilings:
    copy: Timed
    multi_row_insert: Timed
    batch_rows: int


async def raw_insert(libpq_url: str, rows: Sequence[VoucherRow], *, batch_rows: int = 500) -> InsertCeilings:
    """Ceiling B: the final metering.vouchers rows into scratch tables of the same shape.

    Once with COPY (`copy_records_to_table`, all rows in one call) and once with `executemany`
    of one multi-row `INSERT … ON CONFLICT DO NOTHING` per `batch_rows` rows.
    """
    connection = await asyncpg.connect(libpq_url)
    try:
        await connection.execute("CREATE SCHEMA bench_scratch")
        for name in ("vouchers_copy", "vouchers_insert"):
            await connection.execute(
                f"CREATE TABLE bench_scratch.{name} (LIKE metering.vouchers INCLUDING ALL)"
            )

        started = time.perf_counter()
        await connection.copy_records_to_table(
            "vouchers_copy", records=rows, columns=VOUCHER_COLUMNS, schema_name="bench_scratch"
        )
        copy = Timed(len(rows), time.perf_counter() - started)

        def statement(n: int) -> str:
            width = len(VOUCHER_COLUMNS)
            values = ", ".join(
                "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(n)
            )
            columns = ", ".join(VOUCHER_COLUMNS)
            # Only our own identifiers and $n placeholders go into the text.
            return f"INSERT INTO bench_scratch.vouchers_insert ({columns}) VALUES {values} ON CONFLICT DO NOTHING"  # noqa: S608

        full = len(rows) - len(rows) % batch_rows
        args = [
            tuple(value for row in rows[i : i + batch_rows] for value in row)
            for i in range(0, full, batch_rows)
        ]
        tail = tuple(value for row in rows[full:] for value in row)
        started = time.perf_counter()
        if args:
            await connection.executemany(statement(batch_rows), args)
        if tail:
            await connection.execute(statement(len(rows) - full), *tail)
        insert = Timed(len(rows), time.perf_counter() - started)

        for name in ("vouchers_copy", "vouchers_insert"):
            stored = await connection.fetchval(f"SELECT count(*) FROM bench_scratch.{name}")  # noqa: S608
            if stored != len(rows):
                raise RuntimeError(f"bench_scratch.{name} holds {stored} rows, expected {len(rows)}")
    finally:
        try:
            await connection.execute("DROP SCHEMA IF EXISTS bench_scratch CASCADE")
        finally:
            await connection.close()
    return InsertCeilings(copy=copy, multi_row_insert=insert, batch_rows=batch_rows)
