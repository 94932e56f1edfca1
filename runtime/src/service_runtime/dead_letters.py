"""Dead letters for operators: list, inspect, replay after a fix, discard with a reason; every action audited.

The runtime gives every service these tools (API routes in `dead_letter_api`, the CLI in `cli`),
since every service has the same `dead_letters` table. A replay runs the stored bytes through the
same consumer pipeline in process (`IdempotentConsumer.replay`) rather than republishing them:
the service needs no write access to the topics it consumes (the KafkaUser ACLs stay as the
registry generates them), the replay is applied or refused within the operator's request, and a
refused replay leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service_runtime.clock import Clock
from service_runtime.consumer import IdempotentConsumer, StoredRecord
from service_runtime.tables import RuntimeTables

Status = Literal["new", "replayed", "discarded"]
STATUSES: tuple[Status, ...] = ("new", "replayed", "discarded")


class DeadLetterNotFoundError(LookupError):
    """No dead letter with that id in this service."""


class DeadLetterResolvedError(RuntimeError):
    """The dead letter was replayed or discarded already (409): a second replay would apply it twice."""


class CannotReplayError(RuntimeError):
    """The letter cannot be replayed: only its beginning was kept, or no consumer of its group runs here."""


class ReplayRefusedError(RuntimeError):
    """The replay ran and the message was refused again (or found applied since); the attempt is audited."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass(frozen=True)
class DeadLetter:
    """One row of `dead_letters`, as operators see it."""

    id: int
    consumer_group: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    value_size: int | None
    value_sha256: str | None
    value_truncated: bool
    event_id: str | None
    failure: str
    reason: str
    created_at: dt.datetime
    status: str
    resolved_at: dt.datetime | None
    resolved_by: str | None


@dataclass(frozen=True)
class DeadLetterAction:
    """One replay attempt or discard: who, when, what came of it."""

    id: int
    action: str
    outcome: str
    actor: str
    at: dt.datetime
    reason: str | None


@dataclass(frozen=True)
class DeadLetterPage:
    letters: list[DeadLetter]
    next_after: int | None


@dataclass(frozen=True)
class PendingCount:
    consumer_group: str
    topic: str
    failure: str
    count: int


class DeadLetterRepository:
    """The `dead_letters` and `dead_letter_actions` tables of one service."""

    def __init__(self, session: AsyncSession, tables: RuntimeTables) -> None:
        self._session = session
        self._letters = tables.dead_letters
        self._actions = tables.dead_letter_actions

    async def page(
        self,
        *,
        topic: str | None = None,
        status: str | None = None,
        consumer_group: str | None = None,
        failure: str | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> DeadLetterPage:
        """Letters by id (oldest first), filtered; `after` is the last id of the previous page."""
        c = self._letters.c
        conditions = [
            condition
            for condition in (
                c.topic == topic if topic is not None else None,
                c.status == status if status is not None else None,
                c.consumer_group == consumer_group if consumer_group is not None else None,
                c.failure == failure if failure is not None else None,
                c.id > after if after is not None else None,
            )
            if condition is not None
        ]
        query = select(self._letters).where(and_(True, *conditions)).order_by(c.id).limit(limit + 1)
        rows = [_letter(r) for r in (await self._session.execute(query)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        return DeadLetterPage(rows, rows[-1].id if more and rows else None)

    async def get(self, letter_id: int, *, for_update: bool = False) -> DeadLetter | None:
        query = select(self._letters).where(self._letters.c.id == letter_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._session.execute(query)).mappings().first()
        return _letter(row) if row is not None else None

    async def actions(self, letter_id: int) -> list[DeadLetterAction]:
        a = self._actions.c
        rows = await self._session.execute(
            select(a.id, a.action, a.outcome, a.actor, a.at, a.reason)
            .where(a.dead_letter_id == letter_id)
            .order_by(a.id)
        )
        return [DeadLetterAction(**r) for r in rows.mappings()]

    async def resolve(self, letter_id: int, *, status: Status, actor: str, at: dt.datetime) -> None:
        await self._session.execute(
            self._letters.update()
            .where(self._letters.c.id == letter_id)
            .values(status=status, resolved_at=at, resolved_by=actor)
        )

    async def record_action(
        self, letter_id: int, *, action: str, outcome: str, actor: str, at: dt.datetime, reason: str | None
    ) -> None:
        await self._session.execute(
            self._actions.insert().values(
                dead_letter_id=letter_id, action=action, outcome=outcome, actor=actor, at=at, reason=reason
            )
        )

    async def pending(self) -> list[PendingCount]:
        """Letters neither replayed nor discarded, by group, topic and kind (read by /metrics)."""
        c = self._letters.c
        rows = await self._session.execute(
            select(c.consumer_group, c.topic, c.failure, func.count().label("count"))
            .where(c.status == "new")
            .group_by(c.consumer_group, c.topic, c.failure)
        )
        return [PendingCount(**r) for r in rows.mappings()]


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(**{name: row[name] for name in DeadLetter.__dataclass_fields__})


# --- use cases ----------------------------------------------------------------------------------


async def _unresolved(repo: DeadLetterRepository, letter_id: int) -> DeadLetter:
    """The letter, locked for the action, if it exists and is still `new` (else the refusal why)."""
    letter = await repo.get(letter_id, for_update=True)
    if letter is None:
        raise DeadLetterNotFoundError(f"no dead letter {letter_id}")
    if letter.status != "new":
        raise DeadLetterResolvedError(
            f"dead letter {letter_id} was {letter.status} by {letter.resolved_by} at {letter.resolved_at}"
        )
    return letter


async def replay_dead_letter(
    sessions: async_sessionmaker[AsyncSession],
    tables: RuntimeTables,
    consumers: Sequence[IdempotentConsumer[Any]],
    letter_id: int,
    *,
    actor: str,
    clock: Clock,
) -> tuple[DeadLetter, bool]:
    """Replay one new letter through its consumer; mark it replayed when applied. Audited either way.

    Returns the letter as it is now and whether the use case wrote outbox rows (to wake the
    relay). Raises `ReplayRefusedError` after committing the audit of a refused attempt. The
    letter's row is locked for the attempt: two operators replaying it at once apply it once.
    """
    async with sessions.begin() as session:
        repo = DeadLetterRepository(session, tables)
        letter = await _unresolved(repo, letter_id)
        if letter.value_truncated:
            raise CannotReplayError(
                f"only the first {len(letter.value):,} of {letter.value_size or 0:,} bytes were kept "
                "(the record was larger than its topic accepts); ask the publisher to send it again"
            )
        consumer = next((c for c in consumers if c.group == letter.consumer_group), None)
        if consumer is None:
            raise CannotReplayError(f"no consumer of group {letter.consumer_group} runs in this service")
        outcome = await consumer.replay(
            session,
            StoredRecord(letter.topic, letter.partition, letter.offset, letter.key, letter.value),
            # A rejected letter's event id was claimed by the attempt that refused it.
            release_claim=letter.failure == "rejected",
        )
        now = clock.now()
        await repo.record_action(
            letter_id, action="replay", outcome=outcome.outcome, actor=actor, at=now, reason=outcome.reason
        )
        if outcome.outcome == "applied":
            await repo.resolve(letter_id, status="replayed", actor=actor, at=now)
        resolved = await repo.get(letter_id)
        assert resolved is not None
    if outcome.outcome != "applied":
        raise ReplayRefusedError(outcome.outcome, outcome.reason or "refused")
    return resolved, outcome.wrote_outbox


async def discard_dead_letter(
    sessions: async_sessionmaker[AsyncSession],
    tables: RuntimeTables,
    letter_id: int,
    *,
    actor: str,
    reason: str,
    clock: Clock,
) -> DeadLetter:
    """Give up on one new letter, with the reason; audited. It stays in the table, never replayed."""
    async with sessions.begin() as session:
        repo = DeadLetterRepository(session, tables)
        await _unresolved(repo, letter_id)  # locked, still new
        now = clock.now()
        await repo.record_action(
            letter_id, action="discard", outcome="discarded", actor=actor, at=now, reason=reason
        )
        await repo.resolve(letter_id, status="discarded", actor=actor, at=now)
        resolved = await repo.get(letter_id)
        assert resolved is not None
        return resolved


async def pending_dead_letters(
    sessions: async_sessionmaker[AsyncSession], tables: RuntimeTables
) -> list[PendingCount]:
    async with sessions() as session:
        return await DeadLetterRepository(session, tables).pending()
