"""Procountor-sync's tables, in the `procountor_sync` schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from service_runtime.database import service_metadata
from service_runtime.tables import add_runtime_tables

SCHEMA = "procountor_sync"
metadata = service_metadata(SCHEMA)
runtime_tables = add_runtime_tables(metadata)

# Invoices to hand over to Procountor; the worker leases one at a time and retries with backoff.
deliveries = Table(
    "deliveries",
    metadata,
    Column("invoice_id", String(64), primary_key=True),
    Column("invoice_number", String(40), nullable=False, unique=True),
    Column("payload", JSONB, nullable=False, comment="InvoiceIssuedV1 as received."),
    Column("status", String(20), nullable=False, comment="pending, delivered or failed."),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("leased_until", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("procountor_partner_id", String(64), nullable=True),
    Column("procountor_invoice_id", String(64), nullable=True),
    Column("procountor_status", String(30), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
