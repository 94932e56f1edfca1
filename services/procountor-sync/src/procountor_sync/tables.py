"""Procountor-sync's tables, in the `procountor_sync` schema."""

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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from service_runtime.database import service_metadata
from service_runtime.tables import add_runtime_tables

SCHEMA = "procountor_sync"
metadata = service_metadata(SCHEMA)
runtime_tables = add_runtime_tables(metadata)

# Work to do in Procountor, one row per thing to hand over: an invoice, a credit note, a due-date
# move, a refund note. Leased by one replica at a time (a lease renewed by heartbeat), retried with
# capped backoff until it succeeds or an operator cancels it.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", String(160), primary_key=True, comment="<kind>:<subject id>"),
    Column("kind", String(20), nullable=False, comment="invoice, credit_note, due_date or refund_note."),
    Column("invoice_id", String(64), nullable=True, comment="Our invoice (or credit note) it is about."),
    Column("invoice_number", String(40), nullable=True),
    Column("payer_business_id", String(9), nullable=True),
    Column("payload", JSONB, nullable=False, comment="The event that asked for it, as received."),
    Column(
        "status",
        String(20),
        nullable=False,
        comment="pending, awaiting_approval, delivered, refused, cancelled or file (I-05 payers).",
    ),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, comment="On the database's clock."),
    Column("leased_by", String(64), nullable=True, comment="Replica holding the lease."),
    Column("leased_until", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("hold_reason", String(200), nullable=True, comment="Why it waits for finance's approval."),
    Column("failure_announced", Boolean, nullable=False, server_default="false"),
    Column("procountor_partner_id", String(64), nullable=True),
    Column("procountor_invoice_id", String(64), nullable=True, comment="Set as soon as the POST answered."),
    Column("procountor_status", String(30), nullable=True),
    Column("changed_by", String(200), nullable=True, comment="Operator of the last requeue or cancel."),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("ix_deliveries_invoice_id", "invoice_id"),
)

# Every operator's requeue and cancel of a delivery (B-23's who, when and why; issue 12): written in
# the transaction of the action itself; `deliveries.changed_by` keeps only the last one.
delivery_actions = Table(
    "delivery_actions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("delivery_id", String(160), nullable=False, comment="<kind>:<subject id>"),
    Column("action", String(20), nullable=False, comment="requeue or cancel."),
    Column("actor", String(200), nullable=False, comment="The caller: the subject of the operator's token."),
    Column("reason", Text, nullable=True, comment="Why, as the operator gave it (optional)."),
    Column("status_after", String(20), nullable=False, comment="The delivery's status after the action."),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_delivery_actions_delivery_id", "delivery_id", "id"),
)

# Our invoices and credit notes as they stand in Procountor: for payments, status and dunning (I-03).
procountor_invoices = Table(
    "procountor_invoices",
    metadata,
    Column("invoice_id", String(64), primary_key=True),
    Column("procountor_invoice_id", String(64), nullable=False, unique=True),
    Column("procountor_invoice_number", Integer, nullable=True),
    Column("kind", String(20), nullable=False, comment="invoice or credit_note."),
    Column("invoice_number", String(40), nullable=False),
    Column("payer_business_id", String(9), nullable=False),
    Column("payer_name", String(80), nullable=False),
    Column("reference_number", String(20), nullable=True),
    Column("invoice_date", Date, nullable=False),
    Column("due_date", Date, nullable=False, comment="The new due date once moved (B-23)."),
    Column("total_gross", Numeric(14, 2), nullable=False, comment="Procountor's invoiceSumTotal."),
    Column("settled", Numeric(14, 2), nullable=False, server_default="0", comment="Payments and offsets."),
    Column("procountor_status", String(30), nullable=False),
    Column("payment_status", String(20), nullable=False, comment="open, partly_paid, paid, invalidated."),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_procountor_invoices_payer", "payer_business_id"),
)

# Payment events of Procountor, one row each: a payment is published once (I-03).
payments = Table(
    "payments",
    metadata,
    Column("procountor_payment_id", String(64), primary_key=True),
    Column("procountor_invoice_id", String(64), nullable=False),
    Column("invoice_id", String(64), nullable=True),
    Column("event_type", String(40), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("payment_date", Date, nullable=False),
    Column("own", Boolean, nullable=False, comment="Written by us (credit-note offsets): never published."),
    Column("published", Boolean, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_payments_invoice", "procountor_invoice_id"),
)

# Customers as last synced: the base of the three-way merge (I-02).
customers = Table(
    "customers",
    metadata,
    Column("business_id", String(9), primary_key=True),
    Column("payer_id", String(64), nullable=False),
    Column("procountor_partner_id", String(64), nullable=False, unique=True),
    Column("version", String(40), nullable=True, comment="Procountor's version we last saw or wrote."),
    Column("base", JSONB, nullable=False, comment="CustomerData both sides held at the last sync."),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Price-list products as last synced with Procountor's product register (I-02).
products = Table(
    "products",
    metadata,
    Column("product_code", String(40), primary_key=True),
    Column("procountor_product_id", String(64), nullable=False, unique=True),
    Column("version", String(40), nullable=True),
    Column("base", JSONB, nullable=False, comment="ProductData at the last sync."),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Invoices whose totals Procountor computed otherwise: the operators' list (I-01).
mismatches = Table(
    "mismatches",
    metadata,
    Column("invoice_id", String(64), primary_key=True),
    Column("invoice_number", String(40), nullable=False),
    Column("procountor_invoice_id", String(64), nullable=False),
    Column("ours", JSONB, nullable=False),
    Column("procountor", JSONB, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
)

# Hour entries for the payroll import file (I-04); a newer event with the same id replaces one.
hour_entries = Table(
    "hour_entries",
    metadata,
    Column("entry_id", String(100), primary_key=True),
    Column("environment_id", String(64), nullable=False),
    Column("employee_id", String(100), nullable=False),
    Column("service_product_code", String(40), nullable=False),
    Column("work_date", Date, nullable=False),
    Column("hours", Numeric(6, 2), nullable=False),
    Column("billable", Boolean, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_hour_entries_work_date", "work_date"),
)

# Webhook requests seen, by signature: a replay is refused (with the timestamp window).
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("signature_key", String(64), primary_key=True),
    Column("event_type", String(60), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# Where each polling backstop got to: Procountor `version` datetimes (naive Helsinki).
watermarks = Table(
    "watermarks",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(40), nullable=False),
)

# The shared rate limit: one row per request slot of an API client (docs/architecture.md).
rate_limit_slots = Table(
    "rate_limit_slots",
    metadata,
    Column("client_id", String(200), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("free_at", DateTime(timezone=True), nullable=False, comment="On the database's clock."),
)

# The API key from the key-login flow (I-06), encrypted with the operator's key; and pending logins.
credentials = Table(
    "credentials",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
login_states = Table(
    "login_states",
    metadata,
    Column("state", String(64), primary_key=True),
    Column("started_by", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
