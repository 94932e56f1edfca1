"""Idempotent batch consumption: decode, de-duplicate by event id, apply, dead-letter the rest, in one transaction."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

import structlog
from pydantic import ValidationError
from sqlalchemy import Table, TextClause, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message
from billing_contracts.deadletter import DeadLetterV1, FailureKind
from billing_contracts.registry import dead_letter_topic
from service_runtime.bulk import joined_text
from service_runtime.clock import Clock
from service_runtime.metrics import ServiceMetrics
from service_runtime.outbox import OUTBOX_WRITTEN, enqueue, outgoing
from service_runtime.tables import RuntimeTables

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=Message)


class Record(Protocol):
    """What we need of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class Rejection:
    """A decoded message the use case refused, with the reason (it goes to the dead-letter topic)."""

    event_id: uuid.UUID
    reason: str


@dataclass(frozen=True)
class _Failed:
    record: Record
    failure: FailureKind
    reason: str
    event_id: str | None


#: A use case applied to the new (never processed) messages of a batch, inside the batch's transaction.
BatchUseCase = Callable[[AsyncSession, Sequence[M]], Awaitable[Sequence[Rejection]]]

_TRANSIENT = (OperationalError, InterfaceError, OSError, TimeoutError, ConnectionError)


#: PostgreSQL errors that a retry can cure: class 40 (deadlock, serialization failure), lock
#: timeout, statement cancelled, server shutting down or starting.
_TRANSIENT_SQLSTATES = ("55P03", "57014", "57P01", "57P02", "57P03")


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        if sqlstate.startswith("40") or sqlstate in _TRANSIENT_SQLSTATES:
            return True
    return isinstance(exc, _TRANSIENT)


class IdempotentConsumer(Generic[M]):
    """Applies each event id at most once and never lets one bad message stop the partition.

    For a batch of records: undecodable or invalid ones become dead letters; valid ones are
    claimed in `processed_events` (`INSERT … ON CONFLICT DO NOTHING RETURNING`), and only the
    newly claimed are handed to the use case. Claims, state change, dead letters and outgoing
    messages commit in one transaction; the caller commits Kafka offsets after it.
    A transient failure (database or network) raises, so that the batch is redelivered. Any other
    failure of the use case is retried message by message, and a message that still fails is
    dead-lettered with the error as its reason.
    """

    def __init__(
        self,
        *,
        service: str,
        group: str,
        contracts: Mapping[str, type[M]],
        use_case: BatchUseCase[M],
        sessions: async_sessionmaker[AsyncSession],
        tables: RuntimeTables,
        clock: Clock,
        metrics: ServiceMetrics,
        on_outbox_written: Callable[[], None] = lambda: None,
        pipeline: int = 1,
    ) -> None:
        self._service = service
        self._group = group
        self._contracts = dict(contracts)
        self._use_case = use_case
        self._sessions = sessions
        self._tables = tables
        self._clock = clock
        self._metrics = metrics
        self._on_outbox_written = on_outbox_written
        self._dead_letter_topic = dead_letter_topic(service)
        self._pipeline = max(1, pipeline)

    @property
    def topics(self) -> list[str]:
        return sorted(self._contracts)

    async def process(self, records: Sequence[Record]) -> None:
        """Process one batch; return only when all its effects are committed.

        With `pipeline` > 1 the batch is split by Kafka key into that many parts, applied in
        concurrent transactions: one part's Python work runs while another waits for the
        database. Parts share no key, hence no aggregate. If any part
        fails, this raises after the others finished, and the whole batch is redelivered: the
        parts that committed are then recognised by their claims and count nothing twice.
        """
        with self._metrics.batch_seconds.time():
            parts = _split_by_key(records, self._pipeline)
            if len(parts) == 1:
                wrote_outbox = await self._process_part(records)
            else:
                tasks = []
                for part in parts:
                    tasks.append(asyncio.create_task(self._process_part(part)))
                    # Let this part send its first statement before the next part decodes.
                    await asyncio.sleep(0)
                results = await asyncio.gather(*tasks, return_exceptions=True)
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    raise errors[0]
                wrote_outbox = any(r is True for r in results)
        if wrote_outbox:
            self._on_outbox_written()

    async def _process_part(self, records: Sequence[Record]) -> bool:
        decoded, failed = self._decode(records)
        try:
            return await self._apply(decoded, failed)
        except Exception as exc:
            if _is_transient(exc):
                raise
            log.warning("batch_failed_retrying_one_by_one", error=type(exc).__name__, size=len(records))
            return await self._apply_one_by_one(decoded, failed)

    def _decode(self, records: Sequence[Record]) -> tuple[list[tuple[Record, M]], list[_Failed]]:
        decoded: list[tuple[Record, M]] = []
        failed: list[_Failed] = []
        contracts = self._contracts
        # One metric update per topic, not per record.
        for topic, count in Counter(r.topic for r in records).items():
            self._metrics.consumed(topic=topic).inc(count)
        for record in records:
            contract = contracts.get(record.topic)
            if contract is None:
                failed.append(
                    _Failed(
                        record, FailureKind.SCHEMA_VIOLATION, f"no contract for topic {record.topic}", None
                    )
                )
                continue
            try:
                decoded.append((record, contract.model_validate_json(record.value or b"")))
            except ValidationError as exc:
                failed.append(self._describe(record, exc))
        # Duplicates, within the batch or with earlier ones, are found by the claim in one statement.
        return decoded, failed

    @staticmethod
    def _describe(record: Record, exc: ValidationError) -> _Failed:
        errors = exc.errors(include_url=False, include_input=False)
        malformed = any(e["type"] in ("json_invalid", "json_type") for e in errors)
        reason = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors)
        return _Failed(
            record,
            FailureKind.MALFORMED if malformed else FailureKind.SCHEMA_VIOLATION,
            reason[:4000],
            _event_id_of(record.value),
        )

    async def _apply(self, decoded: Sequence[tuple[Record, M]], failed: Sequence[_Failed]) -> bool:
        """Apply one batch in one transaction; True when it added outbox rows."""
        async with self._sessions.begin() as session:
            fresh = await self._claim(session, decoded)
            rejections = await self._use_case(session, [m for _, m in fresh]) if fresh else []
            letters = list(failed)
            if rejections:
                by_id = {m.event_id: r for r, m in fresh}
                letters += [
                    _Failed(by_id[r.event_id], FailureKind.REJECTED, r.reason[:4000], str(r.event_id))
                    for r in rejections
                ]
            await self._dead_letter(session, letters)
            return bool(session.info.get(OUTBOX_WRITTEN))

    async def _apply_one_by_one(self, decoded: Sequence[tuple[Record, M]], failed: Sequence[_Failed]) -> bool:
        wrote = await self._apply([], failed)
        for record, message in decoded:
            try:
                wrote |= await self._apply([(record, message)], [])
            except Exception as exc:
                if _is_transient(exc):
                    raise
                log.exception("message_failed", topic=record.topic, offset=record.offset)
                failure = _Failed(
                    record,
                    FailureKind.REJECTED,
                    f"processing error: {type(exc).__name__}: {exc}"[:4000],
                    str(message.event_id),
                )
                async with self._sessions.begin() as session:
                    await self._claim(session, [(record, message)])
                    await self._dead_letter(session, [failure])
                wrote = True
        return wrote

    async def _claim(
        self, session: AsyncSession, decoded: Sequence[tuple[Record, M]]
    ) -> list[tuple[Record, M]]:
        """Claim the event ids in `processed_events`; return the records seen for the first time.

        One statement for the whole batch, which answers only the positions of the duplicates
        (usually none): a repeated id within the batch counts once, at its first position.
        """
        if not decoded:
            return []
        topics = [r.topic for r, _ in decoded]
        joined = joined_text(topics)
        result = await session.execute(
            _claim_statement(self._tables.processed_events, joined=joined is not None),
            {"ids": [m.event_id for _, m in decoded], "topics": joined or topics, "now": self._clock.now()},
        )
        duplicates = {n - 1 for (n,) in result}
        if not duplicates:
            return list(decoded)
        for i in duplicates:
            self._metrics.duplicates(topic=decoded[i][0].topic).inc()
        return [d for i, d in enumerate(decoded) if i not in duplicates]

    async def _dead_letter(self, session: AsyncSession, letters: Sequence[_Failed]) -> None:
        if not letters:
            return
        now = self._clock.now()
        table = self._tables.dead_letters
        inserted = (
            await session.execute(
                pg_insert(table)
                .values(
                    [
                        {
                            "consumer_group": self._group,
                            "topic": f.record.topic,
                            "partition": f.record.partition,
                            "offset": f.record.offset,
                            "key": f.record.key,
                            "value": f.record.value or b"",
                            "event_id": f.event_id,
                            "failure": f.failure.value,
                            "reason": f.reason,
                            "created_at": now,
                        }
                        for f in letters
                    ]
                )
                .on_conflict_do_nothing()
                .returning(table.c.topic, table.c.partition, table.c.offset)
            )
        ).all()
        new = {(t, p, o) for t, p, o in inserted}
        messages = []
        for f in letters:
            if (f.record.topic, f.record.partition, f.record.offset) not in new:
                continue
            self._metrics.dead_lettered(topic=f.record.topic, failure=f.failure.value).inc()
            log.warning(
                "message_dead_lettered",
                topic=f.record.topic,
                partition=f.record.partition,
                offset=f.record.offset,
                failure=f.failure.value,
                reason=f.reason[:300],
            )
            messages.append(
                outgoing(
                    DeadLetterV1(
                        event_id=uuid.uuid4(),
                        occurred_at=now,
                        producer=self._service,
                        consumer_group=self._group,
                        original_topic=f.record.topic,
                        original_partition=f.record.partition,
                        original_offset=f.record.offset,
                        original_key_b64=base64.b64encode(f.record.key).decode() if f.record.key else None,
                        original_value_b64=base64.b64encode(f.record.value or b"").decode(),
                        original_event_id=f.event_id,
                        failure=f.failure,
                        reason=f.reason,
                    ),
                    topic=self._dead_letter_topic,
                )
            )
        await enqueue(session, self._tables.outbox, messages, self._clock)


def _split_by_key(records: Sequence[Record], parts: int) -> list[Sequence[Record]]:
    """Split a batch into at most `parts` groups; records with the same Kafka key share a group.

    The key is the aggregate (an environment for usage), whatever the topic or partition, so
    concurrent groups never write the same rows and cannot deadlock on them.
    """
    if parts <= 1 or len(records) < 2 * parts:
        return [records]
    groups: list[list[Record]] = [[] for _ in range(parts)]
    for record in records:
        groups[hash(record.key) % parts].append(record)
    return [g for g in groups if g]


@cache
def _claim_statement(table: Table, *, joined: bool) -> TextClause:
    target = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
    topics = "string_to_array(CAST(:topics AS text), E'\\x1f')" if joined else "CAST(:topics AS text[])"
    # Identifiers come from our own table metadata, never from input; values are bound.
    return text(
        f"WITH input AS (SELECT * FROM unnest(CAST(:ids AS uuid[]), {topics})"  # noqa: S608
        " WITH ORDINALITY AS u(event_id, topic, n)),"
        " first AS (SELECT DISTINCT ON (event_id) event_id, topic, n FROM input ORDER BY event_id, n),"
        f" claimed AS (INSERT INTO {target} (event_id, topic, processed_at)"
        " SELECT event_id, topic, CAST(:now AS timestamptz) FROM first ORDER BY event_id"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id)"
        " SELECT input.n FROM input LEFT JOIN (SELECT first.n FROM first JOIN claimed USING (event_id)) AS fresh"
        " ON fresh.n = input.n WHERE fresh.n IS NULL"
    )


def _event_id_of(value: bytes | None) -> str | None:
    try:
        data: Any = json.loads(value or b"")
    except ValueError:
        return None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return str(event_id)[:100] if event_id is not None else None
