"""The delivery intake against the real PostgreSQL: what one Kafka batch queues (I-01, B-06).

Invoicing issues a credit note on a paid invoice and records its refund in one transaction, so
procountor-sync's intake sees them in one batch, the refund first. Deliveries of different kinds
name different columns (a refund note is about no invoice), and a multi-row INSERT takes its
columns from its first row: this once dropped the credit note's invoice id, and its delivery then
failed on every attempt.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from billing_contracts.base import Message
from billing_contracts.invoicing import CreditNoteIssuedV1, CreditNoteLine, RefundRecordedV1, VatTotal
from devstack.infra import async_url, create_database, drop_database
from devstack.testing import migrate
from procountor_sync import tables
from procountor_sync.service import DeliveryIntake
from service_runtime.clock import SystemClock

from ..builders import invoice

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database(postgres_admin_url: str) -> Iterator[str]:
    name = f"sync_intake_{uuid.uuid4().hex[:8]}"
    url = async_url(create_database(postgres_admin_url, name))
    yield url
    drop_database(postgres_admin_url, name)


def credit_note_with_refund() -> tuple[CreditNoteIssuedV1, RefundRecordedV1]:
    issued = invoice()
    line = issued.lines[0]
    vat = (line.net * Decimal("0.255")).quantize(Decimal("0.01"))
    at = dt.datetime.now(dt.UTC)
    note = CreditNoteIssuedV1(
        event_id=uuid.uuid4(), occurred_at=at, producer="invoicing",
        credit_note_id=f"CN-{issued.invoice_number}", credit_note_number=str(int(issued.invoice_number) + 1),
        reference_number=issued.reference_number, credited_invoice_id=issued.invoice_id,
        credited_invoice_number=issued.invoice_number, payer_id=issued.payer_id,
        payer_business_id=issued.payer_business_id, payer_name=issued.payer_name, credit_date=at.date(),
        reason="Väärä määrä", lines=[CreditNoteLine(
            line_no=1, credited_line_no=1, environment_id=line.environment_id, product_code=line.product_code,
            description=line.description, period_start=line.period_start, period_end=line.period_end,
            quantity=line.quantity, unit=line.unit, unit_price=line.unit_price, net=line.net, vat_rate=line.vat_rate)],
        vat_totals=[VatTotal(vat_rate=line.vat_rate, net=line.net, vat=vat)],
        total_net=line.net, total_vat=vat, total_gross=line.net + vat,
    )  # fmt: skip
    refund = RefundRecordedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="invoicing",
        refund_id=f"RF-{note.credit_note_id}",
        payer_id=issued.payer_id,
        payer_business_id=issued.payer_business_id,
        amount=note.total_gross,
        payment_date=at.date(),
        payment_event_id=note.event_id,
        reason="credit note on a paid invoice",
        credit_note_id=note.credit_note_id,
    )
    return note, refund


@pytest.mark.parametrize("refund_first", [True, False], ids=["refund first", "credit note first"])
async def test_a_batch_of_a_refund_and_a_credit_note_queues_both_with_their_own_columns(
    database: str, refund_first: bool
) -> None:
    await migrate(database, "procountor_sync:migrations")
    note, refund = credit_note_with_refund()
    batch: list[Message] = [refund, note] if refund_first else [note, refund]
    engine = create_async_engine(database)
    try:
        async with engine.begin() as connection, AsyncSession(bind=connection) as session:
            assert await DeliveryIntake(SystemClock())(session, batch) == []
        d = tables.deliveries.c
        async with engine.connect() as connection:
            rows = {
                r.delivery_id: r
                for r in await connection.execute(
                    select(d.delivery_id, d.kind, d.invoice_id, d.invoice_number, d.payer_business_id).where(
                        d.delivery_id.in_(
                            [f"credit_note:{note.credit_note_id}", f"refund_note:{refund.refund_id}"]
                        )
                    )
                )
            }
    finally:
        await engine.dispose()

    credit = rows[f"credit_note:{note.credit_note_id}"]
    assert (credit.kind, credit.invoice_id, credit.invoice_number, credit.payer_business_id) == (
        "credit_note",
        note.credit_note_id,
        note.credit_note_number,
        note.payer_business_id,
    )
    noted = rows[f"refund_note:{refund.refund_id}"]
    assert (noted.kind, noted.invoice_id, noted.invoice_number, noted.payer_business_id) == (
        "refund_note",
        None,
        None,
        refund.payer_business_id,
    )
