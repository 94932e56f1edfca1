"""Invoicing's tables, in the `invoicing` schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

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
)

price_lists = Table(
    "price_lists",
    metadata,
    Column("id", Integer, primary_key=True, comment="Single row: the whole price book as loaded."),
    Column("document", Text, nullable=False, comment="The price book YAML exactly as loaded (B-07)."),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
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
    PrimaryKeyConstraint("environment_id", "month", "adjustment_no"),
)

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("run_date", Date, nullable=False),
    Column("billing_month", String(7), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("payers", Integer, nullable=False, server_default="0"),
    Column("invoices_issued", Integer, nullable=False, server_default="0"),
    Column("already_billed", Integer, nullable=False, server_default="0"),
    Column("failures", JSONB, nullable=False, server_default="[]"),
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
    Column("document", JSONB, nullable=False, comment="The issued invoice as published (InvoiceIssuedV1)."),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The database, not only the code, guarantees one invoice per payer and period (no double billing).
    UniqueConstraint("payer_id", "billing_period", name="uq_invoices_payer_period"),
)
