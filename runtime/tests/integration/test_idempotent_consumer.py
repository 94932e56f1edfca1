"""IdempotentConsumer on a real PostgreSQL: once per event id, dead letters for the bad, redelivery on transient failure."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import structlog.testing
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import wire_json
from billing_contracts.deadletter import DeadLetterV1, FailureKind
from billing_contracts.registry import DEAD_LETTER_MAX_BYTES, dead_letter_topic, topic_for
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from service_runtime.clock import FixedClock
from service_runtime.consumer import IdempotentConsumer, Rejection
from service_runtime.metrics import ServiceMetrics

from .conftest import RuntimeTestService

pytestmark = pytest.mark.integration

TOPIC = topic_for(VoucherCreatedV1)
DEAD_LETTERS = dead_letter_topic("metering")
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DEADLOCK = "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = 'deadlock_detected'; END $$"


@dataclass(frozen=True)
class FakeRecord:
    """Satisfies the consumer's Record protocol, like aiokafka's ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Records:
    """Builds records with increasing offsets on one partition."""

    def __init__(self) -> None:
        self._offsets = itertools.count()

    def of(self, message: VoucherCreatedV1) -> FakeRecord:
        return self.raw(wire_json(message), key=message.kafka_key())

    def raw(self, value: bytes, *, key: bytes | None = b"env-1", topic: str = TOPIC) -> FakeRecord:
        return FakeRecord(topic=topic, partition=0, offset=next(self._offsets), key=key, value=value)


def voucher(voucher_id: str, event_id: uuid.UUID | None = None, *, env: str = "env-1") -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=event_id or uuid.uuid4(),
        occurred_at=NOW,
        producer="test",
        environment_id=env,
        voucher_id=voucher_id,
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=NOW,
    )


class CountVouchers:
    """The use case: adds one to `counts[voucher_id]` per message; can be told to fail."""

    def __init__(
        self,
        service: RuntimeTestService,
        *,
        poison: str | None = None,
        fail_once: Exception | None = None,
        deadlocks: int = 0,
    ) -> None:
        self._counts = service.counts
        self._poison = poison
        self._fail_once = fail_once
        self._deadlocks = deadlocks
        self.seen: list[uuid.UUID] = []

    async def __call__(self, session: AsyncSession, messages: Sequence[VoucherCreatedV1]) -> list[Rejection]:
        for message in messages:
            if message.voucher_id == self._poison:
                raise ValueError(f"cannot count {message.voucher_id}")
            stmt = pg_insert(self._counts).values(key=message.voucher_id, n=1)
            await session.execute(
                stmt.on_conflict_do_update(index_elements=["key"], set_={"n": self._counts.c.n + 1})
            )
        if self._fail_once is not None:
            failure, self._fail_once = self._fail_once, None
            raise failure
        if self._deadlocks > 0:
            self._deadlocks -= 1
            # PostgreSQL itself reports the deadlock, as it would between two replicas.
            await session.execute(text(DEADLOCK))
        self.seen.extend(m.event_id for m in messages)
        return []


class Commits:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def consumer(
    service: RuntimeTestService,
    use_case: CountVouchers,
    group: str,
    on_commit: Commits | None = None,
    *,
    pipeline: int = 1,
) -> IdempotentConsumer[VoucherCreatedV1]:
    return IdempotentConsumer(
        service="metering",
        group=group,
        contracts={TOPIC: VoucherCreatedV1},
        use_case=use_case,
        sessions=service.sessions,
        tables=service.tables,
        clock=FixedClock(NOW),
        metrics=ServiceMetrics("rt_test"),
        on_outbox_written=on_commit or Commits(),
        pipeline=pipeline,
    )


async def dead_letter_rows(service: RuntimeTestService) -> list[dict[str, object]]:
    t = service.tables.dead_letters
    async with service.sessions() as session:
        rows = await session.execute(select(t).order_by(t.c.offset))
        return [dict(r._mapping) for r in rows]


async def outbox_letters(service: RuntimeTestService) -> list[tuple[str, DeadLetterV1]]:
    t = service.tables.outbox
    async with service.sessions() as session:
        rows = (await session.execute(select(t.c.topic, t.c.value).order_by(t.c.id))).all()
    return [(r.topic, DeadLetterV1.model_validate_json(r.value)) for r in rows]


async def test_an_event_id_delivered_three_times_across_two_batches_is_applied_once(
    service: RuntimeTestService, unique_name: str
) -> None:
    use_case = CountVouchers(service)
    subject = consumer(service, use_case, unique_name)
    records = Records()
    repeated = voucher("v1")

    await subject.process([records.of(repeated), records.of(voucher("v2")), records.of(repeated)])
    await subject.process([records.of(repeated)])

    assert await service.count_of("v1") == 1
    assert await service.count_of("v2") == 1
    assert use_case.seen.count(repeated.event_id) == 1
    assert await service.rows(service.tables.processed_events) == 2
    assert await service.rows(service.tables.dead_letters) == 0


async def test_malformed_and_invalid_records_become_dead_letters_with_reasons_and_their_neighbours_count(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()
    invalid = voucher("bad")
    invalid_value = json.dumps(invalid.model_dump(mode="json") | {"document_kind": "spaceship"}).encode()
    batch = [
        records.of(voucher("v1")),
        records.raw(b"{not json"),
        records.raw(invalid_value),
        records.raw(wire_json(voucher("elsewhere")), topic="some.unknown-topic.v1"),
        records.of(voucher("v2")),
    ]

    await subject.process(batch)

    assert await service.count_of("v1") == 1
    assert await service.count_of("v2") == 1
    assert await service.count_of("bad") == 0
    assert await service.rows(service.tables.processed_events) == 2

    rows = await dead_letter_rows(service)
    assert [(r["offset"], r["failure"], r["consumer_group"]) for r in rows] == [
        (1, "malformed", unique_name),
        (2, "schema_violation", unique_name),
        (3, "schema_violation", unique_name),
    ]
    assert "Invalid JSON" in str(rows[0]["reason"])
    assert rows[0]["event_id"] is None
    assert "document_kind" in str(rows[1]["reason"])
    assert rows[1]["event_id"] == str(invalid.event_id)
    assert rows[1]["value"] == invalid_value
    assert "no contract for topic some.unknown-topic.v1" in str(rows[2]["reason"])

    letters = await outbox_letters(service)
    assert {topic for topic, _ in letters} == {DEAD_LETTERS}
    assert [(d.original_offset, d.failure, d.consumer_group) for _, d in letters] == [
        (1, FailureKind.MALFORMED, unique_name),
        (2, FailureKind.SCHEMA_VIOLATION, unique_name),
        (3, FailureKind.SCHEMA_VIOLATION, unique_name),
    ]
    assert letters[0][1].original_value() == b"{not json"
    assert letters[1][1].original_event_id == str(invalid.event_id)


async def test_a_message_the_use_case_cannot_process_is_dead_lettered_and_the_others_are_applied(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, CountVouchers(service, poison="poison"), unique_name)
    records = Records()
    poison = voucher("poison")
    batch = [records.of(voucher("v1")), records.of(poison), records.of(voucher("v3"))]

    await subject.process(batch)

    assert await service.count_of("v1") == 1
    assert await service.count_of("v3") == 1
    assert await service.count_of("poison") == 0
    rows = await dead_letter_rows(service)
    assert [(r["offset"], r["failure"], r["event_id"]) for r in rows] == [
        (1, "rejected", str(poison.event_id))
    ]
    assert str(rows[0]["reason"]).startswith("processing error: ValueError: cannot count poison")
    letters = await outbox_letters(service)
    assert [(t, d.original_event_id, d.failure) for t, d in letters] == [
        (DEAD_LETTERS, str(poison.event_id), FailureKind.REJECTED)
    ]

    # The poison is claimed as processed: redelivering the batch neither retries nor re-letters it.
    await subject.process(batch)

    assert await service.count_of("v1") == 1
    assert await service.rows(service.tables.processed_events) == 3
    assert await service.rows(service.tables.dead_letters) == 1
    assert await service.rows(service.tables.outbox) == 1


@pytest.mark.parametrize(
    "failure",
    [
        OperationalError("INSERT …", {}, ConnectionResetError("server closed the connection")),
        ConnectionError("connection reset by peer"),
    ],
    ids=["database-operational-error", "connection-error"],
)
async def test_a_transient_failure_raises_commits_nothing_and_the_redelivered_batch_is_applied_once(
    service: RuntimeTestService, unique_name: str, failure: Exception
) -> None:
    commits = Commits()
    subject = consumer(service, CountVouchers(service, fail_once=failure), unique_name, on_commit=commits)
    records = Records()
    batch = [records.of(voucher("v1")), records.of(voucher("v2"))]

    with pytest.raises(type(failure)):
        await subject.process(batch)

    assert commits.count == 0
    assert await service.count_of("v1") == 0
    assert await service.rows(service.tables.processed_events) == 0
    assert await service.rows(service.tables.dead_letters) == 0
    assert await service.rows(service.tables.outbox) == 0

    await subject.process(batch)

    assert commits.count == 0  # the relay is woken only for outbox rows, and this batch wrote none
    assert await service.count_of("v1") == 1
    assert await service.count_of("v2") == 1
    assert await service.rows(service.tables.processed_events) == 2
    assert await service.rows(service.tables.dead_letters) == 0


async def test_a_deadlock_reported_by_postgresql_is_retried_by_redelivery_and_dead_letters_nothing(
    service: RuntimeTestService, unique_name: str
) -> None:
    # Twice: the whole batch and then its first message alone would both hit it.
    subject = consumer(service, CountVouchers(service, deadlocks=2), unique_name)
    records = Records()
    batch = [records.of(voucher("v1")), records.of(voucher("v2"))]

    for _delivery in range(3):
        try:
            await subject.process(batch)
            break
        except DBAPIError:
            assert await service.rows(service.tables.processed_events) == 0

    assert await service.rows(service.tables.dead_letters) == 0
    assert await service.count_of("v1") == 1
    assert await service.count_of("v2") == 1


async def test_a_batch_applied_in_concurrent_parts_counts_each_event_once_even_with_repeats_across_parts(
    service: RuntimeTestService, unique_name: str
) -> None:
    use_case = CountVouchers(service)
    subject = consumer(service, use_case, unique_name, pipeline=3)
    records = Records()
    events = [voucher(f"v{i}", env=f"env-{i % 7}") for i in range(60)]
    # Keys spread the batch over the three parts; the repeats (same event id) are about other
    # environments, so that a part may meet an event id that another part claims at the same time.
    batch = [records.of(e) for e in events]
    batch += [
        records.of(e.model_copy(update={"environment_id": f"env-{(i + 3) % 7}"}))
        for i, e in enumerate(events[:20])
    ]

    await subject.process(batch)

    assert [await service.count_of(f"v{i}") for i in range(60)] == [1] * 60
    assert sorted(use_case.seen) == sorted(e.event_id for e in events)
    assert await service.rows(service.tables.processed_events) == 60


async def test_when_one_concurrent_part_fails_the_whole_batch_is_redelivered_and_applied_once(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(
        service,
        CountVouchers(service, fail_once=OperationalError("SELECT 1", {}, Exception("gone"))),
        unique_name,
        pipeline=2,
    )
    records = Records()
    batch = [records.of(voucher(f"v{i}", env=f"env-{i}")) for i in range(20)]

    with pytest.raises(OperationalError):
        await subject.process(batch)
    committed_before_redelivery = await service.rows(service.tables.processed_events)
    await subject.process(batch)

    assert committed_before_redelivery < 20  # the failed part committed nothing
    assert [await service.count_of(f"v{i}") for i in range(20)] == [1] * 20
    assert await service.rows(service.tables.processed_events) == 20


# Issue 8: one bad record never stops the batch.

DEEP = b'{"a":' * 1100 + b"1" + b"}" * 1100


async def test_json_nested_1100_deep_is_a_dead_letter_and_its_neighbours_count(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()
    batch = [records.of(voucher("v1")), records.raw(DEEP), records.of(voucher("v2"))]

    await subject.process(batch)

    assert [await service.count_of(v) for v in ("v1", "v2")] == [1, 1]
    rows = await dead_letter_rows(service)
    assert [(r["offset"], r["failure"]) for r in rows] == [(1, "malformed")]
    assert "recursion limit" in str(rows[0]["reason"])
    assert rows[0]["value"] == DEEP


async def test_a_nul_in_the_event_id_is_dead_lettered_without_it_and_the_batch_goes_on(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()
    bad = voucher("nul").model_dump(mode="json") | {"event_id": "abc\u0000def"}
    batch = [records.raw(json.dumps(bad).encode()), records.of(voucher("v1"))]

    await subject.process(batch)

    assert await service.count_of("v1") == 1
    rows = await dead_letter_rows(service)
    assert [(r["failure"], r["event_id"]) for r in rows] == [("schema_violation", "abcdef")]
    assert str(rows[0]["reason"]).startswith("event_id:")
    letters = await outbox_letters(service)
    assert letters[0][1].original_event_id == "abcdef"


async def test_a_nul_in_a_text_field_is_refused_with_its_path_before_the_use_case(
    service: RuntimeTestService, unique_name: str
) -> None:
    use_case = CountVouchers(service)
    subject = consumer(service, use_case, unique_name)
    records = Records()
    bad = voucher("v-nul").model_copy(update={"producer": "crm\u0000"})

    await subject.process([records.of(bad)])

    rows = await dead_letter_rows(service)
    assert [(r["failure"], r["reason"]) for r in rows] == [
        ("schema_violation", "producer: control character U+0000 is not allowed")
    ]
    assert use_case.seen == []


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (b"env-2", "<key>: 'env-2' is not the message's environment_id ('env-1')"),
        (None, "<key>: missing; the key must be the message's environment_id ('env-1')"),
    ],
    ids=["another-environment", "no-key"],
)
async def test_a_record_keyed_by_another_aggregate_or_not_keyed_is_dead_lettered_not_counted(
    service: RuntimeTestService, unique_name: str, key: bytes | None, reason: str
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()
    wrong = voucher("wrong")

    await subject.process([records.raw(wire_json(wrong), key=key), records.of(voucher("v1"))])

    assert await service.count_of("wrong") == 0
    assert await service.count_of("v1") == 1
    rows = await dead_letter_rows(service)
    assert [(r["failure"], r["reason"], r["event_id"]) for r in rows] == [
        ("schema_violation", reason, str(wrong.event_id))
    ]


async def test_a_record_larger_than_its_topic_accepts_is_dead_lettered_truncated_with_size_and_hash(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()
    huge = json.dumps(voucher("huge").model_dump(mode="json") | {"note": "x" * 2_000_000}).encode()

    await subject.process([records.raw(huge), records.of(voucher("v1"))])

    assert await service.count_of("v1") == 1
    rows = await dead_letter_rows(service)
    assert len(rows) == 1
    row = rows[0]
    assert row["failure"] == "schema_violation"
    assert str(row["reason"]).startswith("<size>: the record is 2,000,")
    assert "accepts at most 65,536 bytes" in str(row["reason"])
    assert row["value_truncated"] is True
    assert row["value_size"] == len(huge)
    assert row["value_sha256"] == hashlib.sha256(huge).hexdigest()
    stored = row["value"]
    assert isinstance(stored, bytes)
    assert huge.startswith(stored)
    assert len(stored) == 64 * 1024
    [(_, letter)] = await outbox_letters(service)
    assert letter.original_truncated
    assert letter.original_size == len(huge)
    assert letter.original_sha256 == hashlib.sha256(huge).hexdigest()
    assert len(wire_json(letter)) < DEAD_LETTER_MAX_BYTES


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe{not utf-8", b'{"event_id": "', b"", None],
    ids=["invalid-utf-8", "truncated", "empty", "tombstone"],
)
async def test_undecodable_values_are_malformed_dead_letters_with_a_reason(
    service: RuntimeTestService, unique_name: str, value: bytes | None
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    record = FakeRecord(topic=TOPIC, partition=0, offset=0, key=b"env-1", value=value)

    await subject.process([record])

    rows = await dead_letter_rows(service)
    assert [r["failure"] for r in rows] == ["malformed"]
    assert str(rows[0]["reason"])


async def test_anything_decoding_raises_makes_that_record_a_dead_letter_and_the_batch_goes_on(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()

    class Exploding(VoucherCreatedV1):
        @classmethod
        def model_validate_json(cls, *args: object, **kwargs: object) -> VoucherCreatedV1:  # type: ignore[override]
            raise RecursionError("maximum recursion depth exceeded")

    subject._contracts["usage.exploding.v1"] = Exploding
    batch = [records.raw(b"{}", topic="usage.exploding.v1"), records.of(voucher("v1"))]

    await subject.process(batch)

    assert await service.count_of("v1") == 1
    rows = await dead_letter_rows(service)
    assert [(r["failure"], r["reason"]) for r in rows] == [
        ("malformed", "<value>: could not be decoded (RecursionError)")
    ]


class ViolatesConstraint(CountVouchers):
    """The use case's own insert breaks a constraint: PostgreSQL's error carries SQL and parameters."""

    async def __call__(self, session: AsyncSession, messages: Sequence[VoucherCreatedV1]) -> list[Rejection]:
        for message in messages:
            if message.voucher_id == "secret-poison":
                await session.execute(
                    text("INSERT INTO pg_temp.nope (a) VALUES (:a)"), {"a": "customer-secret-value"}
                )
        return await super().__call__(session, messages)


async def test_a_processing_error_reason_names_the_problem_without_sql_parameters_or_traceback(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, ViolatesConstraint(service), unique_name)
    records = Records()

    await subject.process([records.of(voucher("secret-poison")), records.of(voucher("v1"))])

    assert await service.count_of("v1") == 1
    [row] = await dead_letter_rows(service)
    reason = str(row["reason"])
    assert reason.startswith("processing error: the database refused the change (42P01: ")
    assert 'relation "pg_temp.nope" does not exist' in reason
    for leaked in ("INSERT", "customer-secret-value", "Traceback", "[SQL", "parameters"):
        assert leaked not in reason


async def test_a_dead_letter_the_database_refuses_falls_back_to_a_minimal_one_and_the_batch_commits(
    service: RuntimeTestService, unique_name: str
) -> None:
    # Kafka allows topic names of 249 characters; the dead-letter table's column holds 200.
    subject = consumer(service, CountVouchers(service), unique_name)
    records = Records()
    long_topic = "usage." + "x" * 240 + ".v1"
    batch = [records.raw(b"{}", topic=long_topic), records.of(voucher("v1"))]

    await subject.process(batch)

    assert await service.count_of("v1") == 1
    [row] = await dead_letter_rows(service)
    assert row["topic"] == long_topic[:200]
    assert row["value_size"] == 2
    assert row["value_truncated"] is True
    assert str(row["reason"]).startswith("the dead letter could not be stored as it was")
    assert "first reason: <topic>: no contract for topic" in str(row["reason"])


async def test_a_failing_record_is_logged_once_with_its_event_id_not_at_every_redelivery(
    service: RuntimeTestService, unique_name: str
) -> None:
    subject = consumer(service, ViolatesConstraint(service), unique_name)
    records = Records()
    poison = voucher("secret-poison")
    batch = [records.of(poison), records.raw(b"{not json"), records.of(voucher("v1"))]

    with structlog.testing.capture_logs() as logs:
        for _redelivery in range(3):
            await subject.process(batch)

    lettered = [e for e in logs if e["event"] == "message_dead_lettered"]
    assert sorted((e["offset"], e["event_id"], e["failure"]) for e in lettered) == [
        (0, str(poison.event_id), "rejected"),
        (1, None, "malformed"),
    ]
    # The database's words and the traceback go to the log (once), never into the reason.
    [rejected] = [e for e in lettered if e["failure"] == "rejected"]
    assert "Traceback" in rejected["detail"]
    assert "customer-secret-value" not in rejected["reason"]


async def test_every_line_logged_while_a_batch_is_handled_names_its_message(
    service: RuntimeTestService, unique_name: str
) -> None:
    """Issue 12: a message id in every consumer log line — the batch's coordinates, the event id of a
    message retried on its own."""
    subject = consumer(service, ViolatesConstraint(service), unique_name)
    records = Records()
    poison = voucher("secret-poison")
    batch = [records.of(poison), records.raw(b"{not json"), records.of(voucher("v1"))]

    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await subject.process(batch)

    assert logs
    assert all("message_id" in e for e in logs), [e["event"] for e in logs if "message_id" not in e]
    first, last = batch[0], batch[-1]
    batch_id = f"{first.topic}/{first.partition}@{first.offset}-{last.offset}"
    assert {e["message_id"] for e in logs if e["event"] == "batch_failed_retrying_one_by_one"} == {batch_id}
    (rejected,) = [e for e in logs if e["event"] == "message_dead_lettered" and e["failure"] == "rejected"]
    assert rejected["message_id"] == str(poison.event_id)


async def test_a_dead_letter_replayed_after_the_fix_is_applied_once_and_a_refused_replay_leaves_nothing(
    service: RuntimeTestService, unique_name: str
) -> None:
    from service_runtime.dead_letters import (
        DeadLetterRepository,
        DeadLetterResolvedError,
        ReplayRefusedError,
        replay_dead_letter,
    )

    records = Records()
    poison = voucher(f"{unique_name}-p")
    broken = consumer(service, CountVouchers(service, poison=poison.voucher_id), unique_name)
    await broken.process([records.of(poison)])
    async with service.sessions() as session:
        page = await DeadLetterRepository(session, service.tables).page(consumer_group=unique_name)
    (letter,) = page.letters
    assert (letter.failure, letter.status) == ("rejected", "new")

    # Not fixed yet: refused again; the claim of the first attempt is back, nothing counted.
    with pytest.raises(ReplayRefusedError, match="cannot count"):
        await replay_dead_letter(
            service.sessions,
            service.tables,
            [broken],
            letter.id,
            actor="olli.operator",
            clock=FixedClock(NOW),
        )
    assert await service.count_of(poison.voucher_id) == 0
    await broken.process([records.of(poison)])  # redelivered: still a duplicate of its claim
    assert await service.count_of(poison.voucher_id) == 0

    fixed = consumer(service, CountVouchers(service), unique_name)
    replayed, _ = await replay_dead_letter(
        service.sessions, service.tables, [fixed], letter.id, actor="olli.operator", clock=FixedClock(NOW)
    )
    assert (replayed.status, replayed.resolved_by) == ("replayed", "olli.operator")
    assert await service.count_of(poison.voucher_id) == 1
    with pytest.raises(DeadLetterResolvedError):
        await replay_dead_letter(
            service.sessions, service.tables, [fixed], letter.id, actor="olli.operator", clock=FixedClock(NOW)
        )
    await fixed.process([records.of(poison)])  # the event id is claimed by the replay: counted once
    assert await service.count_of(poison.voucher_id) == 1
    async with service.sessions() as session:
        actions = await DeadLetterRepository(session, service.tables).actions(letter.id)
    assert [(a.action, a.outcome, a.actor) for a in actions] == [
        ("replay", "refused", "olli.operator"),
        ("replay", "applied", "olli.operator"),
    ]


async def test_a_letter_kept_only_in_part_or_of_a_group_not_served_here_cannot_be_replayed(
    service: RuntimeTestService, unique_name: str
) -> None:
    from service_runtime.dead_letters import CannotReplayError, replay_dead_letter

    table = service.tables.dead_letters
    async with service.sessions.begin() as session:
        ids = (
            (
                await session.execute(
                    table.insert()
                    .values(
                        [
                            {
                                "consumer_group": unique_name,
                                "topic": TOPIC,
                                "partition": 0,
                                "offset": offset,
                                "key": b"env-1",
                                "value": b"{",
                                "value_size": 2_000_000,
                                "value_truncated": truncated,
                                "failure": "schema_violation",
                                "reason": "<size>: too large",
                                "created_at": NOW,
                            }
                            for offset, truncated in ((1, True), (2, False))
                        ]
                    )
                    .returning(table.c.id)
                )
            )
            .scalars()
            .all()
        )
    here = consumer(service, CountVouchers(service), unique_name)
    with pytest.raises(CannotReplayError, match="only the first 1 of 2,000,000 bytes were kept"):
        await replay_dead_letter(
            service.sessions, service.tables, [here], ids[0], actor="o", clock=FixedClock(NOW)
        )
    with pytest.raises(CannotReplayError, match=f"no consumer of group {unique_name} runs in this service"):
        await replay_dead_letter(
            service.sessions, service.tables, [], ids[1], actor="o", clock=FixedClock(NOW)
        )
