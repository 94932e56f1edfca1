"""Every service's dead-letter routes: list (paged), inspect, replay, discard; the actor is the token's subject."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import INT64_MAX
from service_runtime.auth import Caller, Role, RoutePolicies, allow, authenticated
from service_runtime.clock import Clock
from service_runtime.consumer import IdempotentConsumer
from service_runtime.dead_letters import (
    CannotReplayError,
    DeadLetter,
    DeadLetterAction,
    DeadLetterNotFoundError,
    DeadLetterRepository,
    DeadLetterResolvedError,
    ReplayRefusedError,
    discard_dead_letter,
    replay_dead_letter,
)
from service_runtime.tables import RuntimeTables


class _Relay(Protocol):
    def wake(self) -> None: ...


class DeadLetterHost(Protocol):
    """What the dead-letter routes use of a service's host: its sessions, tables, consumers (for a
    replay), clock and outbox relay. A protocol rather than `ServiceHost`, so that the host may build
    these routes without the two modules importing each other."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def tables(self) -> RuntimeTables: ...
    @property
    def consumers(self) -> Sequence[IdempotentConsumer[Any]]: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def relay(self) -> _Relay: ...


#: Who may use the dead-letter tools of any service (docs/operations.md, "Tokens and roles").
DEAD_LETTER_POLICIES: RoutePolicies = {
    "GET /dead-letters": allow(Role.VIEWER),
    "GET /dead-letters/{dead_letter_id}": allow(Role.VIEWER),
    "POST /dead-letters/{dead_letter_id}/replay": allow(Role.BILLING_OPERATOR),
    "POST /dead-letters/{dead_letter_id}/discard": allow(Role.BILLING_OPERATOR),
}

LetterId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The dead letter's id.")]
StatusName = Literal["new", "replayed", "discarded"]
#: How much of the original value a summary shows; `GET /dead-letters/{id}` has all of it.
PREVIEW_CHARS = 300


class DeadLetterSummary(BaseModel):
    """A dead letter in a list: where it came from, why it was refused, what became of it."""

    id: int
    consumer_group: str
    topic: str
    partition: int
    offset: int
    event_id: str | None = Field(description="The message's event id, when it could be read.")
    failure: str = Field(description="`malformed`, `schema_violation` or `rejected` (docs/reliability.md).")
    reason: str = Field(description="Why it was refused, for people.")
    created_at: dt.datetime
    status: StatusName = Field(description="`new` until replayed or discarded.")
    resolved_at: dt.datetime | None
    resolved_by: str | None = Field(description="The token subject of the operator who resolved it.")
    value_size: int | None = Field(description="Bytes of the original value.")
    value_preview: str = Field(description=f"The first {PREVIEW_CHARS} characters of the value, as UTF-8.")


class DeadLetterActionView(BaseModel):
    """One replay attempt or discard of the letter (the audit)."""

    action: Literal["replay", "discard"]
    outcome: str = Field(description="`applied`, `refused`, `already_processed` or `discarded`.")
    actor: str = Field(description="The token subject of the operator.")
    at: dt.datetime
    reason: str | None = Field(description="Why it was discarded, or why the replay was refused.")


class DeadLetterView(DeadLetterSummary):
    """A dead letter in full: the original key and value as kept, and every action taken on it."""

    key_b64: str | None = Field(description="The original key (its first 1 KiB), base64.")
    value_b64: str = Field(
        description="The original value as kept, base64 (`value_truncated`: its beginning)."
    )
    value_truncated: bool = Field(description="Only the beginning was kept: it cannot be replayed.")
    value_sha256: str | None = Field(description="SHA-256 of the whole original value.")
    actions: list[DeadLetterActionView]


class DeadLetterPageView(BaseModel):
    items: list[DeadLetterSummary] = Field(description="Oldest first.")
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last page.")


class DiscardRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="Why it will never be replayed (audit).")


def _summary(letter: DeadLetter) -> dict[str, object]:
    return {
        "id": letter.id,
        "consumer_group": letter.consumer_group,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "event_id": letter.event_id,
        "failure": letter.failure,
        "reason": letter.reason,
        "created_at": letter.created_at,
        "status": letter.status,
        "resolved_at": letter.resolved_at,
        "resolved_by": letter.resolved_by,
        "value_size": letter.value_size,
        "value_preview": letter.value[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS],
    }


def _view(letter: DeadLetter, actions: list[DeadLetterAction]) -> DeadLetterView:
    return DeadLetterView.model_validate(
        _summary(letter)
        | {
            "key_b64": base64.b64encode(letter.key).decode() if letter.key is not None else None,
            "value_b64": base64.b64encode(letter.value).decode(),
            "value_truncated": letter.value_truncated,
            "value_sha256": letter.value_sha256,
            "actions": [a.__dict__ for a in actions],
        }
    )


def build_dead_letter_router(host: DeadLetterHost) -> APIRouter:
    """`/dead-letters` of one service (runtime-provided, the same in every service)."""
    router = APIRouter(tags=["dead letters"])

    async def read(letter_id: int) -> DeadLetterView:
        async with host.sessions() as session:
            repo = DeadLetterRepository(session, host.tables)
            letter = await repo.get(letter_id)
            if letter is None:
                raise HTTPException(404, f"no dead letter {letter_id}")
            return _view(letter, await repo.actions(letter_id))

    @router.get("/dead-letters")
    async def list_dead_letters(
        topic: Annotated[str | None, Query(max_length=200)] = None,
        status: StatusName | None = None,
        consumer_group: Annotated[str | None, Query(max_length=200)] = None,
        failure: Annotated[str | None, Query(max_length=40)] = None,
        after: Annotated[
            int | None, Query(ge=0, le=INT64_MAX, description="`next_after` of the last page.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> DeadLetterPageView:
        """Messages this service could not process, oldest first, by topic, status, group and kind."""
        async with host.sessions() as session:
            page = await DeadLetterRepository(session, host.tables).page(
                topic=topic,
                status=status,
                consumer_group=consumer_group,
                failure=failure,
                after=after,
                limit=limit,
            )
        return DeadLetterPageView.model_validate(
            {"items": [_summary(letter) for letter in page.letters], "next_after": page.next_after}
        )

    @router.get("/dead-letters/{dead_letter_id}")
    async def get_dead_letter(dead_letter_id: LetterId) -> DeadLetterView:
        """One dead letter with its original key and value and what was done with it."""
        return await read(dead_letter_id)

    @router.post("/dead-letters/{dead_letter_id}/replay")
    async def replay(dead_letter_id: LetterId, caller: Annotated[Caller, authenticated]) -> DeadLetterView:
        """Run the kept message through its consumer again, after the cause was fixed (audited).

        Applied: the letter becomes `replayed`. Refused again: 422 with the reason, the letter
        stays `new` and the attempt is in its `actions`. 409 when it was resolved already, cannot
        be replayed (only its beginning was kept) or its event was applied since.
        """
        try:
            _, wrote_outbox = await replay_dead_letter(
                host.sessions,
                host.tables,
                host.consumers,
                dead_letter_id,
                actor=caller.subject,
                clock=host.clock,
            )
        except DeadLetterNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except (DeadLetterResolvedError, CannotReplayError) as exc:
            raise HTTPException(409, str(exc)) from exc
        except ReplayRefusedError as exc:
            if exc.outcome == "already_processed":
                raise HTTPException(409, exc.reason) from exc
            raise HTTPException(422, f"the message was refused again: {exc.reason}") from exc
        if wrote_outbox:
            host.relay.wake()
        return await read(dead_letter_id)

    @router.post("/dead-letters/{dead_letter_id}/discard")
    async def discard(
        dead_letter_id: LetterId, body: DiscardRequest, caller: Annotated[Caller, authenticated]
    ) -> DeadLetterView:
        """Give up on a dead letter, with the reason (audited); it is kept, never replayed."""
        try:
            await discard_dead_letter(
                host.sessions,
                host.tables,
                dead_letter_id,
                actor=caller.subject,
                reason=body.reason,
                clock=host.clock,
            )
        except DeadLetterNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except DeadLetterResolvedError as exc:
            raise HTTPException(409, str(exc)) from exc
        return await read(dead_letter_id)

    return router
