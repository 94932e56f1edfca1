"""Tables every service has in its own schema: outbox, processed events, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


@dataclass(frozen=True)
class RuntimeTables:
    """The runtime's tables inside one service's metadata."""

    outbox: Table
    processed_events: Table
    dead_letters: Table
    dead_letter_actions: Table


def add_runtime_tables(metadata: MetaData) -> RuntimeTables:
    """Add the outbox, processed-event and dead-letter tables to a service's metadata."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default="{}"),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # A row the broker refused for good (too large, invalid topic) is parked, not retried: the
        # relay goes on with the others. An operator clears these to publish it again.
        Column("parked_at", DateTime(timezone=True), nullable=True),
        Column("parked_reason", Text, nullable=True),
        comment="Messages written in the same transaction as the change they announce; the relay publishes them.",
    )
    processed = Table(
        "processed_events",
        metadata,
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        comment="Event ids applied once; written in the same transaction as the state change they caused.",
    )
    dead = Table(
        "dead_letters",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("consumer_group", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("key", LargeBinary, nullable=True),
        # The original bytes, to replay them; for a record larger than its topic accepts, the
        # beginning only (value_truncated), with the size and hash of the whole.
        Column("value", LargeBinary, nullable=False),
        Column("value_size", BigInteger, nullable=True),
        Column("value_sha256", String(64), nullable=True),
        Column("value_truncated", Boolean, nullable=False, server_default="false"),
        Column("event_id", String(100), nullable=True),
        Column("failure", String(40), nullable=False),
        Column("reason", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # new → replayed or discarded, by the operators' tools (issue 12); who and when below.
        Column("status", String(20), nullable=False, server_default="new"),
        Column("resolved_at", DateTime(timezone=True), nullable=True),
        Column("resolved_by", String(200), nullable=True, comment="The token subject of the operator."),
        UniqueConstraint("consumer_group", "topic", "partition", "offset"),
        # What /metrics counts every 15 s (pending letters by group, topic and kind) stays an index scan.
        Index(
            f"ix_{metadata.schema or 'public'}_dead_letters_pending",
            "consumer_group",
            "topic",
            "failure",
            postgresql_where=text("status = 'new'"),
        ),
        comment="Messages that could not be processed, with the reason; also published to the dead-letter topic.",
    )
    actions = Table(
        "dead_letter_actions",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("dead_letter_id", BigInteger, ForeignKey(dead.c.id), nullable=False, index=True),
        Column("action", String(20), nullable=False, comment="`replay` or `discard`."),
        Column("outcome", String(20), nullable=False, comment="`applied`, `refused` or `discarded`."),
        Column("actor", String(200), nullable=False, comment="The token subject of the operator."),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("reason", Text, nullable=True, comment="Why it was discarded, or why the replay was refused."),
        comment="Every replay attempt and discard of a dead letter: who, when, what came of it (audit).",
    )
    return RuntimeTables(
        outbox=outbox, processed_events=processed, dead_letters=dead, dead_letter_actions=actions
    )
