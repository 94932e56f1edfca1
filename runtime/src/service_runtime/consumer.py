"""Idempotent batch consumption: decode, de-duplicate by event id, apply, dead-letter the rest, in one transaction."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

import pydantic_core
import structlog
from pydantic import ValidationError
from sqlalchemy import Table, TextClause, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message, bound_message
from billing_contracts.deadletter import DeadLetterV1, FailureKind
from billing_contracts.registry import dead_letter_topic, max_message_bytes
from service_runtime.bulk import joined_text
from service_runtime.clock import Clock
from service_runtime.hygiene import MAYBE_ESCAPED_CONTROL, control_in, describe_char, visible
from service_runtime.logging import bound_message as log_context
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
class StoredRecord:
    """A record as the dead-letter table kept it: what a replay feeds back through the consumer."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class ReplayOutcome:
    """What replaying one stored record did: applied, or refused again (with the reason), or found done."""

    outcome: str
    """`applied`, `refused` or `already_processed`."""
    event_id: str | None = None
    reason: str | None = None
    wrote_outbox: bool = False


class _RolledBack(Exception):
    """Leaves a replay's savepoint so that nothing of a refused replay stays."""

    def __init__(self, outcome: ReplayOutcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass(frozen=True)
class _Failed:
    record: Record
    failure: FailureKind
    reason: str
    event_id: str | None
    #: For the log only (a traceback, the database's own words): logged once, with the event id,
    #: when the dead letter is first written; never part of the reason.
    detail: str | None = None


#: Longest reason kept (the contract allows 4,000 characters; people read the first lines).
REASON_LIMIT = 2000
#: Validation errors listed in a reason; the rest are counted.
REASON_ERRORS = 10
#: A dead letter carries the original value in full up to this size, else its beginning
#: (`TRUNCATED_BYTES`) with the size and SHA-256 of the whole: base64 makes it a third larger,
#: and the dead letter must fit its topic (`DEAD_LETTER_MAX_BYTES`, 1 MiB).
CARRY_IN_FULL_BYTES = 512 * 1024
TRUNCATED_BYTES = 64 * 1024
#: Keys are ids; a longer key is kept by its beginning.
KEY_BYTES = 1024


#: The records of the messages a use case is being applied to, by event id (set around the call).
_RECORDS: ContextVar[Mapping[uuid.UUID, Record] | None] = ContextVar("consumed_records", default=None)


def record_of(event_id: uuid.UUID) -> Record | None:
    """The Kafka record a message being applied came in (None outside a consumer, e.g. over HTTP).

    For a use case that keeps an input to act on it later — partners parks an input that waits for
    what it needs, and dead-letters it when its parking expires — the letter must name the record.
    """
    records = _RECORDS.get()
    return records.get(event_id) if records is not None else None


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

    For a batch of records: each record is classified on its own, inside the error handling, so
    that whatever decoding raises (invalid JSON, nesting deeper than the parser allows, invalid
    UTF-8, a record larger than its topic accepts, a key that is not the message's aggregate id,
    a control character in a field) makes that one record a dead letter with a reason. Valid
    records are claimed in `processed_events` (`INSERT … ON CONFLICT DO NOTHING RETURNING`), and
    only the newly claimed are handed to the use case. Claims, state change, dead letters and
    outgoing messages commit in one transaction; the caller commits Kafka offsets after it.
    A transient failure (database or network) raises, so that the batch is redelivered. Any other
    failure of the use case is retried message by message, and a message that still fails is
    dead-lettered with a reason for people (the traceback goes to the log, once). A dead letter
    that cannot be stored as it is falls back to a minimal one: a batch always makes progress.
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
        self._limits = {topic: max_message_bytes(topic) for topic in self._contracts}

    @property
    def topics(self) -> list[str]:
        return sorted(self._contracts)

    @property
    def group(self) -> str:
        """The consumer group."""
        return self._group

    @property
    def contracts(self) -> Mapping[str, type[M]]:
        """The contract of each topic."""
        return dict(self._contracts)

    async def replay(self, session: AsyncSession, record: Record, *, release_claim: bool) -> ReplayOutcome:
        """Run one stored record through this consumer again, inside the caller's transaction.

        The same pipeline as a delivery from Kafka (decode with today's contract and limits, key
        check, claim of the event id, the use case), but in process: nothing is written to any
        topic but what the use case itself announces through the outbox. `release_claim` removes
        the claim the rejected attempt left in `processed_events` (a `rejected` letter was
        claimed in the transaction that refused it), so that the replay is not skipped as a
        duplicate of its own failure. Anything short of `applied` is rolled back to a savepoint:
        the claim stays as it was and no partial effect remains.
        """
        with log_context(message_id=_coordinates(record), topic=record.topic):
            try:
                async with session.begin_nested():
                    return await self._replay(session, record, release_claim=release_claim)
            except _RolledBack as rolled_back:
                return rolled_back.outcome

    async def _replay(self, session: AsyncSession, record: Record, *, release_claim: bool) -> ReplayOutcome:
        try:
            decoded = self._decode_one(record)
        except Exception as exc:
            raise _RolledBack(
                ReplayOutcome("refused", reason=f"<value>: could not be decoded ({type(exc).__name__})")
            ) from exc
        if isinstance(decoded, _Failed):
            raise _RolledBack(ReplayOutcome("refused", event_id=decoded.event_id, reason=decoded.reason))
        event_id = str(decoded.event_id)
        if release_claim:
            table = self._tables.processed_events
            await session.execute(table.delete().where(table.c.event_id == decoded.event_id))
        if not await self._claim(session, [(record, decoded)]):
            raise _RolledBack(
                ReplayOutcome(
                    "already_processed",
                    event_id=event_id,
                    reason=f"event {event_id} has been applied since (republished?); discard this letter",
                )
            )
        records = _RECORDS.set({decoded.event_id: record})
        try:
            rejections = await self._use_case(session, [decoded])
        except Exception as exc:
            if _is_transient(exc):
                raise
            log.warning(
                "dead_letter_replay_failed", event_id=event_id, error=type(exc).__name__, exc_info=True
            )
            raise _RolledBack(
                ReplayOutcome("refused", event_id=event_id, reason=processing_reason(exc))
            ) from exc
        finally:
            _RECORDS.reset(records)
        if rejections:
            raise _RolledBack(ReplayOutcome("refused", event_id=event_id, reason=rejections[0].reason))
        return ReplayOutcome(
            "applied", event_id=event_id, wrote_outbox=bool(session.info.get(OUTBOX_WRITTEN))
        )

    async def dead_letter_later(
        self, session: AsyncSession, letters: Sequence[tuple[Record, uuid.UUID, str]]
    ) -> None:
        """Dead-letter records a use case kept and gave up on later: (record, event id, reason) each.

        In the caller's transaction, as `rejected`, exactly as a refusal at consumption would be
        (stored, announced, counted, logged once; a letter already stored is not written again).
        Partners parks inputs that wait for what they need and dead-letters them when that expires.
        """
        await self._dead_letter(
            session,
            [
                _Failed(record, FailureKind.REJECTED, reason, str(event_id))
                for record, event_id, reason in letters
            ],
        )

    async def process(self, records: Sequence[Record]) -> None:
        """Process one batch; return only when all its effects are committed.

        With `pipeline` > 1 the batch is split by Kafka key into that many parts, applied in
        concurrent transactions: one part's Python work runs while another waits for the
        database. Parts share no key, hence no aggregate. If any part
        fails, this raises after the others finished, and the whole batch is redelivered: the
        parts that committed are then recognised by their claims and count nothing twice.
        """
        with self._metrics.batch_seconds.time(), log_context(message_id=_batch_id(records)):
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
        # One metric update per topic, not per record.
        for topic, count in Counter(r.topic for r in records).items():
            self._metrics.consumed(topic=topic).inc(count)
        for record in records:
            try:
                outcome = self._decode_one(record)
            except Exception as exc:
                # Whatever decoding raises (RecursionError, UnicodeDecodeError, a bug) is about this
                # record alone: it becomes a dead letter; the batch goes on.
                outcome = _Failed(
                    record,
                    FailureKind.MALFORMED,
                    f"<value>: could not be decoded ({type(exc).__name__})",
                    None,
                    detail=traceback.format_exc(),
                )
            if isinstance(outcome, _Failed):
                failed.append(outcome)
            else:
                decoded.append((record, outcome))
        # Duplicates, within the batch or with earlier ones, are found by the claim in one statement.
        return decoded, failed

    def _decode_one(self, record: Record) -> M | _Failed:
        """The message of one record, or why it is not one (checks cheapest first)."""
        contract = self._contracts.get(record.topic)
        if contract is None:
            return _Failed(
                record, FailureKind.SCHEMA_VIOLATION, f"<topic>: no contract for topic {record.topic}", None
            )
        value = record.value
        if value is None:
            return _Failed(record, FailureKind.MALFORMED, "<value>: the record has no value", None)
        size = len(value) + len(record.key or b"")
        limit = self._limits.get(record.topic) or max_message_bytes(record.topic)
        if size > limit:
            return _Failed(
                record,
                FailureKind.SCHEMA_VIOLATION,
                f"<size>: the record is {size:,} bytes (key and value); {record.topic} accepts at most "
                f"{limit:,} bytes (docs/publishing-events.md)",
                None,
            )
        try:
            message = contract.model_validate_json(value)
        except ValidationError as exc:
            return self._describe(record, exc)
        expected = message.kafka_key()
        if record.key != expected:
            return _Failed(
                record, FailureKind.SCHEMA_VIOLATION, _wrong_key(record.key, expected, contract), _id(message)
            )
        # One regex search over the bytes (0.2 µs); only a hit pays for the precise check.
        if MAYBE_ESCAPED_CONTROL.search(value) is not None:
            found = control_in(message.model_dump(mode="json"))
            if found is not None:
                where, char = found
                return _Failed(
                    record,
                    FailureKind.SCHEMA_VIOLATION,
                    f"{visible(where, limit=200)}: control character {describe_char(char)} is not allowed",
                    _id(message),
                )
        return message

    @staticmethod
    def _describe(record: Record, exc: ValidationError) -> _Failed:
        errors = exc.errors(include_url=False, include_input=False)
        malformed = any(e["type"] in ("json_invalid", "json_type") for e in errors)
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {bound_message(e['type'], e['msg'])}"
            for e in errors[:REASON_ERRORS]
        ]
        if len(errors) > REASON_ERRORS:
            lines.append(f"and {len(errors) - REASON_ERRORS} more errors")
        return _Failed(
            record,
            FailureKind.MALFORMED if malformed else FailureKind.SCHEMA_VIOLATION,
            "; ".join(lines),
            _event_id_of(record.value),
        )

    async def _apply(self, decoded: Sequence[tuple[Record, M]], failed: Sequence[_Failed]) -> bool:
        """Apply one batch in one transaction; True when it added outbox rows."""
        async with self._sessions.begin() as session:
            fresh = await self._claim(session, decoded)
            records = _RECORDS.set({m.event_id: r for r, m in fresh})
            try:
                rejections = await self._use_case(session, [m for _, m in fresh]) if fresh else []
            finally:
                _RECORDS.reset(records)
            letters = list(failed)
            if rejections:
                by_id = {m.event_id: r for r, m in fresh}
                letters += [
                    _Failed(by_id[r.event_id], FailureKind.REJECTED, r.reason, str(r.event_id))
                    for r in rejections
                ]
            await self._dead_letter(session, letters)
            return bool(session.info.get(OUTBOX_WRITTEN))

    async def _apply_one_by_one(self, decoded: Sequence[tuple[Record, M]], failed: Sequence[_Failed]) -> bool:
        wrote = await self._apply([], failed)
        for record, message in decoded:
            with log_context(message_id=str(message.event_id), topic=record.topic):
                wrote |= await self._apply_alone(record, message)
        return wrote

    async def _apply_alone(self, record: Record, message: M) -> bool:
        """One message of a failed batch on its own; dead-lettered with the reason if it still fails."""
        try:
            return await self._apply([(record, message)], [])
        except Exception as exc:
            if _is_transient(exc):
                raise
            failure = _Failed(
                record,
                FailureKind.REJECTED,
                processing_reason(exc),
                str(message.event_id),
                detail=traceback.format_exc(),
            )
        async with self._sessions.begin() as session:
            await self._claim(session, [(record, message)])
            await self._dead_letter(session, [failure])
        return True

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
        """Store and announce dead letters; one that cannot be stored as it is falls back to a minimal one."""
        if not letters:
            return
        try:
            async with session.begin_nested():
                await self._write_dead_letters(session, [_letter(f) for f in letters])
        except Exception as exc:
            if _is_transient(exc):
                raise
            # The letters themselves were refused (a value the database cannot hold, a bug): the
            # batch must still move on, so each becomes its coordinates, size, hash and kind.
            log.error(
                "dead_letter_refused_writing_minimal",
                error=type(exc).__name__,
                detail=visible(str(exc), limit=500),
                records=[(f.record.topic, f.record.partition, f.record.offset) for f in letters],
            )
            await self._write_dead_letters(session, [_minimal_letter(f) for f in letters])

    async def _write_dead_letters(self, session: AsyncSession, letters: Sequence[_Letter]) -> None:
        now = self._clock.now()
        table = self._tables.dead_letters
        inserted = (
            await session.execute(
                pg_insert(table)
                .values(
                    [
                        {
                            "consumer_group": self._group,
                            "topic": f.topic,
                            "partition": f.partition,
                            "offset": f.offset,
                            "key": f.key,
                            "value": f.stored_value,
                            "value_size": f.size,
                            "value_sha256": f.sha256,
                            "value_truncated": f.stored_truncated,
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
            if (f.topic, f.partition, f.offset) not in new:
                continue
            self._metrics.dead_lettered(topic=f.topic, failure=f.failure.value).inc()
            # Logged once: only when the dead letter is first written, never at a redelivery.
            log.warning(
                "message_dead_lettered",
                topic=f.topic,
                partition=f.partition,
                offset=f.offset,
                event_id=f.event_id,
                failure=f.failure.value,
                reason=f.reason[:300],
                size=f.size,
                detail=f.detail,
            )
            messages.append(
                outgoing(
                    DeadLetterV1(
                        event_id=uuid.uuid4(),
                        occurred_at=now,
                        producer=self._service,
                        consumer_group=self._group,
                        original_topic=f.topic,
                        original_partition=f.partition,
                        original_offset=f.offset,
                        original_key_b64=base64.b64encode(f.key).decode() if f.key is not None else None,
                        original_key_truncated=f.key_truncated,
                        original_value_b64=base64.b64encode(f.carried_value).decode(),
                        original_truncated=f.carried_truncated,
                        original_size=f.size,
                        original_sha256=f.sha256,
                        original_event_id=f.event_id,
                        failure=f.failure,
                        reason=f.reason,
                    ),
                    topic=self._dead_letter_topic,
                )
            )
        await enqueue(session, self._tables.outbox, messages, self._clock)


@dataclass(frozen=True)
class _Letter:
    """A dead letter as stored and published: bounded, sanitised, with the original's size and hash."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    key_truncated: bool
    stored_value: bytes
    stored_truncated: bool
    carried_value: bytes
    carried_truncated: bool
    size: int
    sha256: str
    event_id: str | None
    failure: FailureKind
    reason: str
    detail: str | None


def _letter(f: _Failed) -> _Letter:
    value = f.record.value or b""
    key = f.record.key
    # The table keeps every byte the topic accepts (a replay needs them); a record larger than
    # that, and the published letter beyond CARRY_IN_FULL_BYTES, keep the beginning.
    stored_truncated = len(value) + len(key or b"") > max_message_bytes(f.record.topic)
    carried_truncated = len(value) > CARRY_IN_FULL_BYTES
    return _Letter(
        topic=f.record.topic,
        partition=f.record.partition,
        offset=f.record.offset,
        key=key[:KEY_BYTES] if key is not None else None,
        key_truncated=key is not None and len(key) > KEY_BYTES,
        stored_value=value[:TRUNCATED_BYTES] if stored_truncated else value,
        stored_truncated=stored_truncated,
        carried_value=value[:TRUNCATED_BYTES] if carried_truncated else value,
        carried_truncated=carried_truncated,
        size=len(value),
        sha256=hashlib.sha256(value).hexdigest(),
        event_id=_clean_id(f.event_id),
        failure=f.failure,
        reason=visible(f.reason, limit=REASON_LIMIT) or "(no reason given)",
        detail=f.detail,
    )


def _minimal_letter(f: _Failed) -> _Letter:
    letter = _letter(f)
    return _Letter(
        topic=letter.topic[:200],
        partition=letter.partition,
        offset=letter.offset,
        key=None,
        key_truncated=f.record.key is not None,
        stored_value=b"",
        stored_truncated=True,
        carried_value=b"",
        carried_truncated=True,
        size=letter.size,
        sha256=letter.sha256,
        event_id=None,
        failure=letter.failure,
        reason=(
            f"the dead letter could not be stored as it was; the original is at {letter.topic[:200]} "
            f"partition {letter.partition} offset {letter.offset} (size and SHA-256 here); "
            f"first reason: {letter.reason[:500]}"
        ),
        detail=letter.detail,
    )


def processing_reason(exc: BaseException) -> str:
    """A reason for people from an unexpected failure of a use case: no SQL, parameters or traceback.

    Database errors are named by their SQLSTATE and the database's first line (which carries
    no parameters); other errors by their type and first line, which our own code writes for
    people.
    """
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        words = str(orig).split("\n", 1)[0] if orig is not None else ""
        # asyncpg's adapted errors read "<class '…'>: message"; keep the message.
        words = words.split(">: ", 1)[-1]
        return visible(
            f"processing error: the database refused the change ({sqlstate or type(exc).__name__}: {words})",
            limit=500,
        )
    first_line = str(exc).split("\n", 1)[0]
    return visible(f"processing error: {type(exc).__name__}: {first_line}", limit=500)


def _wrong_key(key: bytes | None, expected: bytes, contract: type[Message]) -> str:
    field = contract.key_field or "aggregate id"
    shown_expected = visible(expected.decode("utf-8", "replace"), limit=100)
    if not key:
        return f"<key>: missing; the key must be the message's {field} ({shown_expected!r})"
    shown = visible(key.decode("utf-8", "replace"), limit=100)
    return f"<key>: {shown!r} is not the message's {field} ({shown_expected!r})"


def _clean_id(event_id: str | None) -> str | None:
    if event_id is None:
        return None
    cleaned = "".join(ch for ch in event_id if ch.isprintable())[:100]
    return cleaned or None


def _id(message: Message) -> str:
    return str(message.event_id)


def _coordinates(record: Record) -> str:
    return f"{record.topic}/{record.partition}@{record.offset}"


def _batch_id(records: Sequence[Record]) -> str:
    """The id bound to every log line of a batch: its records' coordinates (`topic/partition@first-last`).

    A batch of one record is that record; a batch over several partitions names its first
    record and the count. Lines about one message inside (dead letters, one-by-one retries)
    carry its event id as well.
    """
    if not records:
        return "empty"
    first, last = records[0], records[-1]
    if len(records) == 1:
        return _coordinates(first)
    if first.topic == last.topic and first.partition == last.partition:
        return f"{first.topic}/{first.partition}@{first.offset}-{last.offset}"
    return f"{_coordinates(first)}+{len(records) - 1}"


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
    """The `event_id` of an invalid message, if one can be read; never raises."""
    if not value or len(value) > CARRY_IN_FULL_BYTES:
        return None
    try:
        # pydantic's parser bounds the nesting depth itself (the standard library's would raise
        # RecursionError on a deep document).
        data: Any = pydantic_core.from_json(value)
    except Exception:
        return None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return _clean_id(str(event_id)) if event_id is not None else None
