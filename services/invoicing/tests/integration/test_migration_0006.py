"""Migration 0006 takes Procountor's payment states out of `delivery_status` (I-01, I-03), and back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.infra import async_url, create_database, drop_database
from service_runtime.migrations import downgrade, upgrade

pytestmark = pytest.mark.integration

LOCATION = "invoicing:migrations"


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    name = f"inv_0006_{uuid.uuid4().hex[:10]}"
    yield async_url(create_database(postgres_admin_url, name))
    drop_database(postgres_admin_url, name)


def sql(url: str, statement: str, **params: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


INSERT = """
INSERT INTO invoicing.invoices (invoice_id, invoice_number, reference_number, payer_id, billing_period,
  invoice_date, due_date, total_net, total_vat, total_gross, status, run_id, document, created_at,
  procountor_invoice_id, delivery_status, delivery_error)
VALUES (:id, :number, :reference, :id, '2026-10', '2026-11-02', '2026-11-16', 10, 2.55, 12.55,
  'open', 'run', '{}', now(), :pc, :status, :error)
"""

STATE = """
SELECT invoice_id, delivery_status, delivery_error, payment_status FROM invoicing.invoices ORDER BY invoice_id
"""


def test_payment_states_move_to_payment_status_and_delivery_states_stay(database: str) -> None:
    upgrade(database, LOCATION, "0005")
    rows = [
        ("INV-1", "paid", None),
        ("INV-2", "partly_paid", None),
        ("INV-3", "invalidated", None),
        ("INV-4", "sent", None),
        ("INV-5", "failed_retrying", "Procountor answered 503"),
        ("INV-6", None, None),
    ]
    for n, (invoice_id, status, error) in enumerate(rows, start=1):
        sql(
            database,
            INSERT,
            id=invoice_id,
            number=n,
            reference=f"R{n}",
            pc=f"PC-{n}",
            status=status,
            error=error,
        )

    upgrade(database, LOCATION, "0006")
    moved = sql(database, STATE)
    downgrade(database, LOCATION, "0005")
    back = sql(database, "SELECT invoice_id, delivery_status FROM invoicing.invoices ORDER BY invoice_id")

    assert [tuple(r) for r in moved] == [
        ("INV-1", "sent", None, "paid"),
        ("INV-2", "sent", None, "partly_paid"),
        ("INV-3", "sent", None, "invalidated"),
        ("INV-4", "sent", None, None),
        ("INV-5", "failed_retrying", "Procountor answered 503", None),
        ("INV-6", None, None, None),
    ]
    assert [tuple(r) for r in back] == [(invoice_id, status) for invoice_id, status, _ in rows]
