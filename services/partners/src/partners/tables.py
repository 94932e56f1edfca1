"""Partners' tables, in the `partners` schema."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, String, Table

from service_runtime.database import service_metadata
from service_runtime.tables import add_runtime_tables

SCHEMA = "partners"
metadata = service_metadata(SCHEMA)
runtime_tables = add_runtime_tables(metadata)

# The latest known state of each environment's contract, as published by invoicing (P-03).
environments = Table(
    "environments",
    metadata,
    Column("environment_id", String(64), primary_key=True),
    Column("accounting_firm_id", String(64), nullable=True, index=True),
    Column("status", String(40), nullable=False),
    Column("own_use", Boolean, nullable=False),
    Column("is_end_customer", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
