"""Partners' tables, in the `partners` schema: the stored facts, the standings computed from them, commissions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from service_runtime.database import service_metadata
from service_runtime.tables import add_runtime_tables

SCHEMA = "partners"
metadata = service_metadata(SCHEMA)
runtime_tables = add_runtime_tables(metadata)

# --- facts (what the CRM, the training platform and invoicing told us; never updated) ---

#: P-02: cooperation agreements signed and ended, one row per accepted event.
agreement_facts = Table(
    "agreement_facts",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("firm_id", String(64), nullable=False, index=True),
    Column("kind", String(10), nullable=False, comment="signed | ended"),
    Column("on_date", Date, nullable=False, comment="Signed on / ended on."),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=True),
    Column("recorded_by", String(200), nullable=False, comment="Producer, or `api:<caller>` for the API."),
    comment="P-02 facts; a firm's agreement in force on a day is computed from them.",
)

#: P-04: exam results, withdrawals, people joining and leaving firms, one row per accepted event.
expert_facts = Table(
    "expert_facts",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("expert_id", String(100), nullable=False, index=True),
    Column("firm_id", String(64), nullable=False, index=True),
    Column("kind", String(12), nullable=False, comment="passed | withdrawn | joined | left"),
    Column("on_date", Date, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("software", String(20), nullable=True),
    Column("exam", String(30), nullable=True),
    Column("reason", Text, nullable=True),
    Column("recorded_by", String(200), nullable=False),
    comment="P-04 facts about pseudonymous persons; counts are computed from them.",
)

#: Program inputs refused for what is not known yet (an unregistered firm, a person's move not yet
#: seen), kept to be applied when it arrives: a firm's facts travel on several topics.
parked_inputs = Table(
    "parked_inputs",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column(
        "seq", BigInteger, Identity(always=True), nullable=False, comment="The order they were parked in."
    ),
    Column("firm_id", String(64), nullable=False, index=True),
    Column("expert_id", String(100), nullable=True, index=True),
    Column("topic", String(200), nullable=False),
    Column("message", LargeBinary, nullable=False, comment="The input as received (wire JSON)."),
    Column("rule", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=True),
    # Where it came from, so that its dead letter names the record when its parking expires.
    Column("consumer_group", String(200), nullable=True),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
    Column("key", LargeBinary, nullable=True),
    Column(
        "expired_at",
        DateTime(timezone=True),
        nullable=True,
        comment="Its parking expired with nothing it needs arrived: dead-lettered then, with its reason.",
    ),
    # The sweep and the gauge read the waiting ones by age.
    Index(
        "ix_partners_parked_inputs_waiting",
        "parked_at",
        postgresql_where=text("applied_at IS NULL AND expired_at IS NULL"),
    ),
)

#: P-03: the latest known state of each environment's contract, as invoicing published it.
environments = Table(
    "environments",
    metadata,
    Column("environment_id", String(64), primary_key=True),
    Column("contract_id", String(64), nullable=True, index=True),
    Column("accounting_firm_id", String(64), nullable=True, index=True),
    Column("status", String(40), nullable=False),
    Column("package", String(20), nullable=True),
    Column("own_use", Boolean, nullable=False),
    Column("reseller_partner_id", String(64), nullable=True),
    Column(
        "successor_contract_id", String(64), nullable=True, comment="B-28: the contract replacing this one."
    ),
    Column("is_end_customer", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    # P-03 counts read only this index (an index-only scan per firm) for the environments without a
    # B-28 successor, which are nearly all of them.
    Index(
        "ix_partners_environments_end_customers",
        "accounting_firm_id",
        postgresql_where=text("is_end_customer AND successor_contract_id IS NULL"),
    ),
    # B-28: the environments whose count depends on a contract (its predecessors), found when that
    # contract's state changes; few have a successor.
    Index(
        "ix_partners_environments_successor",
        "successor_contract_id",
        postgresql_where=text("successor_contract_id IS NOT NULL"),
    ),
)

# --- firms and their standing (computed from the facts) ---

firms = Table(
    "firms",
    metadata,
    Column("firm_id", String(64), primary_key=True),
    Column("business_id", String(9), nullable=False),
    Column("firm_name", String(100), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    # P-09 master data: the latest details event (by occurred_at) wins.
    Column("city", String(60), nullable=True),
    Column("website", String(200), nullable=True),
    Column("presentation", Text, nullable=True),
    Column("extended_presentation", Text, nullable=True),
    Column("software", String(100), nullable=False, server_default="", comment="Comma-separated codes."),
    Column("details_changed_at", DateTime(timezone=True), nullable=True),
    # P-05 standing as last computed, and the tier last announced.
    Column("in_program", Boolean, nullable=False, server_default=text("false")),
    Column("tier", String(20), nullable=True),
    Column("end_customers", Integer, nullable=False, server_default="0"),
    Column("certified_experts", Integer, nullable=False, server_default="0"),
    Column("authorized_experts", Integer, nullable=False, server_default="0"),
    Column("tier_reason", Text, nullable=True),
    Column("standing_on", Date, nullable=True, comment="The Helsinki day the standing was computed for."),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_partners_firms_listed", "tier", postgresql_where=text("in_program")),
)

#: P-05: every tier change, as published; the tier in effect for a month is read from it (P-07).
tier_changes = Table(
    "tier_changes",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("firm_id", String(64), nullable=False, index=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("effective_month", String(7), nullable=False),
    Column("old_tier", String(20), nullable=True),
    Column("new_tier", String(20), nullable=False),
    Column("in_program", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("end_customers", Integer, nullable=False),
    Column("certified_experts", Integer, nullable=False),
    Column("authorized_experts", Integer, nullable=False),
)

# --- commissions (P-08) ---

#: Every invoice and credit note invoicing published, to know when a month's are all in.
billing_documents = Table(
    "billing_documents",
    metadata,
    Column("document_id", String(64), primary_key=True),
    Column("kind", String(12), nullable=False, comment="invoice | credit_note"),
    Column(
        "month", String(7), nullable=False, comment="Invoice: billing period; credit note: month of its date."
    ),
    Index("ix_partners_billing_documents_kind_month", "kind", "month"),
)

#: One row per (document, reseller) with software charges; never changed once stored.
commission_lines = Table(
    "commission_lines",
    metadata,
    Column("document_id", String(64), primary_key=True),
    Column("partner_id", String(64), primary_key=True),
    Column("kind", String(12), nullable=False),
    Column("month", String(7), nullable=False, comment="The statement month it belongs to at the earliest."),
    Column("number", String(40), nullable=False),
    Column("document_date", Date, nullable=False),
    Column("payer_business_id", String(9), nullable=False),
    Column("credited_invoice_number", String(40), nullable=True),
    Column("billing_period", String(7), nullable=True),
    Column("software_net", Numeric(14, 2), nullable=False, comment="Negative for a credit note."),
    comment="Immutable (trigger commission_lines_immutable); its statement is in commission_line_statements.",
)
#: The lines not yet on a statement, by the month they belong to at the earliest: taking a month's
#: lines deletes their rows here (no new version of the wide line, no index entry of it).
commission_lines_pending = Table(
    "commission_lines_pending",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("partner_id", String(64), primary_key=True),
    Column("document_id", String(64), primary_key=True),
    comment="Lines waiting for a statement; a row is deleted when its line goes on one.",
)
#: The statement each line went on (P-08): narrow rows written once, by partner and statement.
commission_line_statements = Table(
    "commission_line_statements",
    metadata,
    Column("partner_id", String(64), primary_key=True),
    Column("statement_id", String(100), primary_key=True),
    Column("document_id", String(64), primary_key=True),
    comment="Immutable (trigger commission_line_statements_immutable).",
)
#: What invoicing said of each month's billing run (the latest attempt's totals).
billing_runs = Table(
    "billing_runs",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("run_finished", Boolean, nullable=False, comment="False when an operator made the month first."),
    Column("invoices_issued", Integer, nullable=False),
    Column("credit_notes_issued", Integer, nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("statements_issued_at", DateTime(timezone=True), nullable=True),
    Column("statements", Integer, nullable=True),
    Column("issued_by", String(200), nullable=True, comment="`billing run`, or the operator who forced it."),
)

commission_statements = Table(
    "commission_statements",
    metadata,
    Column("statement_id", String(100), primary_key=True),
    Column("partner_id", String(64), nullable=False),
    Column("month", String(7), nullable=False),
    Column("lines", Integer, nullable=False),
    Column("software_net_total", Numeric(14, 2), nullable=False),
    Column("rate_percent", Numeric(6, 2), nullable=False),
    Column("commission_amount", Numeric(14, 2), nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    UniqueConstraint("partner_id", "month"),
    comment="Published statements; immutable (trigger commission_statements_immutable).",
)
