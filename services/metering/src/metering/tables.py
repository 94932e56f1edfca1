"""Metering's tables, in the `metering` schema."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from service_runtime.database import service_metadata
from service_runtime.tables import add_runtime_tables

SCHEMA = "metering"
metadata = service_metadata(SCHEMA)
runtime_tables = add_runtime_tables(metadata)

# One row per voucher id: a create and a void may arrive in any order (B-09, B-11).
vouchers = Table(
    "vouchers",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("voucher_id", String(100), nullable=False),
    Column("document_kind", String(40), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=True),
    Column("month", String(7), nullable=True, comment="Helsinki creation month (B-09)."),
    Column("voided_at", DateTime(timezone=True), nullable=True),
    Column("void_month", String(7), nullable=True),
    PrimaryKeyConstraint("environment_id", "voucher_id"),
)

# One row per person and month (B-12: a person counts once a month).
payees = Table(
    "payees",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("month", String(7), nullable=False),
    Column("person_id", String(100), nullable=False),
    Column("first_payslip_id", String(100), nullable=False),
    Column("first_calculated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("environment_id", "month", "person_id"),
)

# One row per invoice message (B-13).
einvoice_messages = Table(
    "einvoice_messages",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("voucher_id", String(100), nullable=False),
    Column("direction", String(8), nullable=False, comment="`sent` or `received`."),
    Column("channel", String(20), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("month", String(7), nullable=False),
    PrimaryKeyConstraint("environment_id", "voucher_id", "direction"),
)

# Role history of Tallennus users (B-16); the state at month end is the last change before it.
user_role_changes = Table(
    "user_role_changes",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("user_id", String(100), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("roles", ARRAY(String(40)), nullable=False),
    PrimaryKeyConstraint("environment_id", "user_id", "changed_at"),
)

signatures = Table(
    "signatures",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("signature_id", String(100), nullable=False),
    Column("signer_count", Integer, nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=False),
    Column("month", String(7), nullable=False),
    PrimaryKeyConstraint("environment_id", "signature_id"),
)

# Hour entries (I-04, I-07): the newest recording of an entry id wins.
hour_entries = Table(
    "hour_entries",
    metadata,
    Column("entry_id", String(100), primary_key=True),
    Column("environment_id", String(64), nullable=False, index=True),
    Column("employee_id", String(100), nullable=False),
    Column("service_product_code", String(40), nullable=False),
    Column("work_date", Date, nullable=False),
    Column("month", String(7), nullable=False),
    Column("hours", Numeric(8, 4), nullable=False),
    Column("billable", Boolean, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

closed_months = Table(
    "closed_months",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("environment_count", Integer, nullable=False),
)

# What was published for a closed month, so that late usage becomes an adjustment (never silently merged).
finalized_usage = Table(
    "finalized_usage",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("month", String(7), nullable=False),
    Column("usage", JSONB, nullable=False),
    Column("adjustments", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("environment_id", "month"),
)


def _month_brin(table: Table) -> Index:
    """A BRIN index on `month`, so that closing a month reads only the pages holding it.

    Usage arrives roughly in time order, so a month's rows sit together on disk and a block-range
    index finds them at almost no cost per insert (a B-tree would add one random index write per
    row on the ingest path). Declarative partitioning by month does not fit `vouchers`: one voucher
    id is one voucher whatever month its events carry (B-08, B-09: the earliest creation wins; a
    void may come first), which needs a unique key without the month. See docs/architecture.md.
    """
    return Index(
        f"ix_{table.name}_month_brin",
        table.c.month,
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
    )


MONTH_INDEXES = tuple(
    _month_brin(table) for table in (vouchers, payees, einvoice_messages, signatures, hour_entries)
)
