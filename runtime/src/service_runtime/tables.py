"""Tables every service has in its own schema: outbox, processed events, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


@dataclass(frozen=True)
class RuntimeTables:
    """The runtime's tables inside one service's metadata."""

    outbox: Table
    processed_events: Table
    dead_letters: Table


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
        # new → replayed or discarded, by the operators' tools (issue 12).
        Column("status", String(20), nullable=False, server_default="new"),
        UniqueConstraint("consumer_group", "topic", "partition", "offset"),
        comment="Messages that could not be processed, with the reason; also published to the dead-letter topic.",
    )
    return RuntimeTables(outbox=outbox, processed_events=processed, dead_letters=dead)
