"""Invoicing's tables, in the `invoicing` schema."""

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
    Numeric,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB

from service_runtime.database import service_metadata
from service_runtime.tables import add_runtime_tables

SCHEMA = "invoicing"
metadata = service_metadata(SCHEMA)
runtime_tables = add_runtime_tables(metadata)

#: B-18: invoice numbers are unique and increasing; the sequence hands them out.
invoice_number_seq = Sequence("invoice_number_seq", start=100001, metadata=metadata, schema=SCHEMA)

contracts = Table(
    "contracts",
    metadata,
    Column("contract_id", String(64), primary_key=True),
    Column("environment_id", String(64), nullable=False, unique=True),
    Column("business_id", String(9), nullable=False),
    Column("company_name", String(80), nullable=False),
    Column("package", String(20), nullable=False),
    Column("production_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("payer_kind", String(20), nullable=False),
    Column("payer_id", String(64), nullable=False, index=True, comment="Business ID of the payer (B-17)."),
    Column("accounting_firm_id", String(64), nullable=True),
    Column("accounting_firm_business_id", String(9), nullable=True),
    Column("reseller_partner_id", String(64), nullable=True),
    Column("own_use", Boolean, nullable=False),
    Column("billing_address", JSONB, nullable=False),
    Column("billing_channel", String(20), nullable=False),
    Column("einvoice_address", JSONB, nullable=True),
    Column("billing_email", String(254), nullable=True),
    Column("billing_contact", JSONB, nullable=True),
    Column("status", String(30), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # B-27: termination notice, end (`end_date`) and the day until which the data is kept.
    Column("notice_given_on", Date, nullable=True),
    Column("termination_reason", Text, nullable=True),
    Column("data_retained_until", Date, nullable=True),
    # B-28: e-invoice addresses are per business ID and end with the old contract.
    Column("einvoice_address_ends_on", Date, nullable=True),
    Column("predecessor_contract_id", String(64), nullable=True),
    Column("successor_contract_id", String(64), nullable=True),
    comment="Each contract's current state; package, firm and payer per month are in contract_terms (B-26).",
)

# B-26: effective-dated package, accounting firm and payer. One row per change; the terms of a
# month fold every row from before or in it (NULL effective_from: the terms signed with).
contract_terms = Table(
    "contract_terms",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("contract_id", String(64), nullable=False),
    Column("effective_from", Date, nullable=True, comment="First day of the month; NULL = from the start."),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("change_id", BigInteger, nullable=True, comment="The contract_changes row that made it."),
    Column("package", String(20), nullable=True),
    Column("sets_accounting_firm", Boolean, nullable=False),
    Column("accounting_firm_id", String(64), nullable=True),
    Column("accounting_firm_business_id", String(9), nullable=True),
    Column("payer_kind", String(20), nullable=True),
    Column("payer_id", String(64), nullable=True),
    Column(
        "applied",
        Boolean,
        nullable=False,
        comment="Reflected in the contracts row (in effect now or before).",
    ),
    Index("ix_contract_terms_contract", "contract_id", "effective_from"),
    Index("ix_contract_terms_pending", "effective_from", postgresql_where=text("NOT applied")),
    # Exactly one row of signed terms per contract: billing joins it one to one.
    Index(
        "uq_contract_terms_signed",
        "contract_id",
        unique=True,
        postgresql_where=text("effective_from IS NULL"),
    ),
)

# B-29: a Tallennus firm change waiting for the approvals of both firms.
tallennus_firm_changes = Table(
    "tallennus_firm_changes",
    metadata,
    Column("contract_id", String(64), primary_key=True, comment="At most one pending change per contract."),
    Column("old_accounting_firm_id", String(64), nullable=False),
    Column("new_accounting_firm_id", String(64), nullable=False),
    Column("old_approval", JSONB, nullable=True),
    Column("new_approval", JSONB, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Audit of every contract change: who, when, what, why.
contract_changes = Table(
    "contract_changes",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("contract_id", String(64), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("change", String(60), nullable=False),
    Column("requested_by", JSONB, nullable=True),
    Column("details", JSONB, nullable=False),
    Column(
        "outcome",
        String(20),
        nullable=False,
        server_default="accepted",
        comment="accepted, pending, refused.",
    ),
    Column("rule", String(8), nullable=True, comment="SPEC rule of a refusal (B-25 …)."),
    Column("reason", Text, nullable=True, comment="Why: the refusal's reason or the requester's."),
    Column("effective_from", Date, nullable=True, comment="First billed month it affects (B-26)."),
    Column("source", String(20), nullable=True, comment="http, kafka or procountor."),
    Column("event_id", Uuid, nullable=True, comment="The command's event id."),
    Column(
        "asserted_by",
        String(200),
        nullable=True,
        comment="Who vouches for the requester: the calling system's token subject, or kafka:<topic>.",
    ),
)

# B-07: effective-dated price lists, one row each, from the configured file or the API.
price_lists = Table(
    "price_lists",
    metadata,
    Column("price_list_id", String(64), primary_key=True),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date, nullable=True),
    Column("is_sample", Boolean, nullable=False, comment="Made-up prices, refused in production."),
    Column("document", Text, nullable=False, comment="The price list as a one-list price book YAML."),
    Column("source", String(20), nullable=False, comment="file or api."),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
    Column(
        "loaded_by",
        String(200),
        nullable=True,
        comment="The token subject of who loaded it over the API; `configuration` for the file.",
    ),
)

closed_months = Table(
    "closed_months",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("environment_count", Integer, nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
)

monthly_usage = Table(
    "monthly_usage",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("month", String(7), nullable=False),
    Column("usage", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("environment_id", "month"),
)

usage_adjustments = Table(
    "usage_adjustments",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("month", String(7), nullable=False),
    Column("adjustment_no", Integer, nullable=False),
    Column("usage", JSONB, nullable=False),
    Column("previous", JSONB, nullable=False),
    Column("billed_invoice_id", String(64), nullable=True),
    Column(
        "billed_in_period",
        String(7),
        nullable=True,
        comment="Billing period of the run that billed it: as the month's own usage or as a correction.",
    ),
    Column("received_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("environment_id", "month", "adjustment_no"),
    Index("ix_usage_adjustments_unbilled", "month", postgresql_where=text("billed_in_period IS NULL")),
)

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("run_date", Date, nullable=False),
    Column("billing_month", String(7), nullable=False),
    Column("status", String(30), nullable=False, comment="running, completed, completed_with_failures."),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("payers", Integer, nullable=False, server_default="0"),
    Column("invoices_issued", Integer, nullable=False, server_default="0"),
    Column("already_billed", Integer, nullable=False, server_default="0"),
    Column("failures", JSONB, nullable=False, server_default="[]"),
    # Progress and counts; the authoritative outcome of each payer is in billing_outcomes.
    Column("held", Integer, nullable=False, server_default="0"),
    Column("zero", Integer, nullable=False, server_default="0"),
    Column("nothing_to_bill", Integer, nullable=False, server_default="0"),
    Column("payers_done", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_run_date", Date, nullable=True, comment="Invoice date of the latest attempt."),
    Column("updated_at", DateTime(timezone=True), nullable=True),
    comment="One row per billing period (run_id run-YYYY-MM); every attempt updates it.",
)

invoices = Table(
    "invoices",
    metadata,
    Column("invoice_id", String(64), primary_key=True),
    Column("invoice_number", BigInteger, nullable=False, unique=True),
    Column("reference_number", String(20), nullable=False, unique=True),
    Column("payer_id", String(64), nullable=False),
    Column("billing_period", String(7), nullable=False),
    Column("invoice_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("total_net", Numeric(14, 2), nullable=False),
    Column("total_vat", Numeric(14, 2), nullable=False),
    Column("total_gross", Numeric(14, 2), nullable=False),
    Column("status", String(20), nullable=False),
    Column("run_id", String(64), nullable=False),
    # JSON, not JSONB: kept exactly as published (key order too), and half the cost to write.
    Column("document", JSON, nullable=False, comment="The issued invoice as published (InvoiceIssuedV1)."),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("paid_amount", Numeric(14, 2), nullable=False, server_default="0"),
    Column("credited_net", Numeric(14, 2), nullable=False, server_default="0"),
    Column("credited_gross", Numeric(14, 2), nullable=False, server_default="0"),
    Column("procountor_invoice_id", String(64), nullable=True),
    Column(
        "delivery_status",
        String(30),
        nullable=True,
        comment="procountor-sync's delivery report (I-01): awaiting_approval, sent, failed_retrying, failed.",
    ),
    Column("delivery_error", Text, nullable=True),
    Column("delivery_status_at", DateTime(timezone=True), nullable=True, comment="The report's own time."),
    Column(
        "payment_status",
        String(20),
        nullable=True,
        comment="Procountor's payment state (I-03): open, partly_paid, paid, invalidated.",
    ),
    Column("procountor_paid_amount", Numeric(14, 2), nullable=True, comment="Settled, as Procountor says."),
    Column("procountor_open_amount", Numeric(14, 2), nullable=True, comment="Open, as Procountor says."),
    Column("payment_status_at", DateTime(timezone=True), nullable=True, comment="The report's own time."),
    Column("updated_at", DateTime(timezone=True), nullable=True),
    # The database, not only the code, guarantees one invoice per payer and period (no double billing).
    UniqueConstraint("payer_id", "billing_period", name="uq_invoices_payer_period"),
    Index("ix_invoices_billing_period", "billing_period"),
    # Payments look invoices up by Procountor's id (I-03); only delivered invoices have one.
    Index(
        "ix_invoices_procountor_invoice_id",
        "procountor_invoice_id",
        postgresql_where=text("procountor_invoice_id IS NOT NULL"),
    ),
)

# --- Billing run (issue 4): outcomes, held lines, corrections, tiers, credit notes, payments ---

#: B-15, B-17: what each payer's billing period became; the primary key makes it happen once.
billing_outcomes = Table(
    "billing_outcomes",
    metadata,
    Column("payer_id", String(64), nullable=False),
    Column("billing_period", String(7), nullable=False),
    Column("outcome", String(20), nullable=False, comment="issue, hold, zero or nothing."),
    Column("reason", String(30), nullable=True, comment="The B-15 reason."),
    Column("invoice_id", String(64), nullable=True),
    Column("net", Numeric(14, 2), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("payer_id", "billing_period"),
    comment="Each (payer, billing period) is decided exactly once, whatever reruns or concurrent runs do.",
)

#: Which run billed each environment-month, and for which payer: corrections need the month billed.
billed_environment_months = Table(
    "billed_environment_months",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("month", String(7), nullable=False),
    Column("payer_id", String(64), nullable=False),
    Column("billing_period", String(7), nullable=False),
    PrimaryKeyConstraint("environment_id", "month"),
)

#: B-15: lines held under the minimum invoice, until an invoice of the payer carries them.
held_lines = Table(
    "held_lines",
    metadata,
    Column("payer_id", String(64), nullable=False),
    Column("billing_period", String(7), nullable=False, comment="The run that held them."),
    Column("lines", JSONB, nullable=False, comment="InvoiceLine objects (without line_no)."),
    Column("net", Numeric(14, 2), nullable=False),
    Column("reason", String(30), nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False),
    Column("released_in_period", String(7), nullable=True),
    Column("released_invoice_id", String(64), nullable=True, comment="NULL with a period: settled at zero."),
    PrimaryKeyConstraint("payer_id", "billing_period"),
    Index("ix_held_lines_unreleased", "payer_id", postgresql_where=text("released_in_period IS NULL")),
)

#: Payers set aside by a run, with the reason; removed when a later attempt bills them.
billing_failures = Table(
    "billing_failures",
    metadata,
    Column("billing_period", String(7), nullable=False),
    Column("payer_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("billing_period", "payer_id"),
)

#: P-07: each firm's partner tier, effective-dated by the first month it is billed with.
partner_tiers = Table(
    "partner_tiers",
    metadata,
    Column("firm_id", String(64), nullable=False),
    Column("effective_month", String(7), nullable=False),
    Column("tier", String(20), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=True),
    Column("event_id", Uuid, nullable=False),
    PrimaryKeyConstraint("firm_id", "effective_month"),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    Column("credit_note_id", String(64), primary_key=True),
    Column("credit_note_number", BigInteger, nullable=False, unique=True, comment="Same series as invoices."),
    Column("reference_number", String(20), nullable=False, unique=True),
    Column("invoice_id", String(64), nullable=False, index=True),
    Column("payer_id", String(64), nullable=False, index=True),
    Column("credit_date", Date, nullable=False),
    Column("reason", Text, nullable=False),
    Column("total_net", Numeric(14, 2), nullable=False),
    Column("total_vat", Numeric(14, 2), nullable=False),
    Column("total_gross", Numeric(14, 2), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("request_id", String(100), nullable=True, unique=True, comment="Client idempotency key."),
    Column("document", JSON, nullable=False, comment="The credit note as published (CreditNoteIssuedV1)."),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: I-03, B-06: payments from Procountor and where they went.
payments = Table(
    "payments",
    metadata,
    Column("procountor_payment_id", String(64), primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("payer_business_id", String(9), nullable=False, index=True),
    Column("invoice_id", String(64), nullable=True),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("payment_date", Date, nullable=False),
    Column("allocations", JSONB, nullable=False, comment="[{invoice_id, amount}] applied to open invoices."),
    Column("refunded", Numeric(14, 2), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

#: B-06: money to return to a payer (a refund, not a credit): a payment no open invoice took, or a
#: credit note on an invoice already paid. The one refund list finance works from.
refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(64), primary_key=True),
    Column("payer_id", String(64), nullable=False, index=True),
    Column("payer_business_id", String(9), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("payment_date", Date, nullable=False),
    Column("payment_event_id", Uuid, nullable=False, unique=True),
    Column("procountor_payment_id", String(64), nullable=True, comment="None for a credit note's refund."),
    Column("procountor_invoice_id", String(64), nullable=True),
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False, server_default="to_refund"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("credit_note_id", String(64), nullable=True, comment="The credit note it returns, if any."),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    Column("paid_by", String(200), nullable=True, comment="Token subject of who marked it paid back."),
    Column("paid_note", Text, nullable=True, comment="e.g. the bank transfer's archive id."),
)

#: B-23: every due-date move, who asked, who made it, when and why.
due_date_changes = Table(
    "due_date_changes",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("invoice_id", String(64), nullable=False, index=True),
    Column("old_due_date", Date, nullable=True),
    Column("new_due_date", Date, nullable=False),
    Column("outcome", String(20), nullable=False, comment="accepted or refused."),
    Column("reason", Text, nullable=False, comment="The requester's reason."),
    Column("refusal", Text, nullable=True),
    Column("changed_by", String(100), nullable=False),
    Column("requested_by", JSONB, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("source", String(20), nullable=False, comment="http or kafka."),
    Column("event_id", Uuid, nullable=True, unique=True),
)
