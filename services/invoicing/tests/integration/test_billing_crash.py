"""A billing run killed in the middle of a batch, then run again, bills every payer exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing_contracts.invoicing import InvoiceIssuedV1
from invoicing import tables as t

from .conftest import Billing, business_id

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("crashing_billing_run.py")
NOV_2 = dt.date(2026, 11, 2)
PAYERS = 45
BATCH = 10
ISSUED = t.runtime_tables.outbox.c.topic == "invoicing.invoice-issued.v1"


async def run_process(database_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        database_url,
        NOV_2.isoformat(),
        "--batch-size",
        str(BATCH),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    # The report is the last line; the service's log lines come before it.
    lines = stdout.decode().strip().splitlines()
    return int(process.returncode or 0), lines[-1] if lines else "", stderr.decode()


async def test_a_run_that_dies_mid_batch_and_is_rerun_issues_each_invoice_exactly_once(
    billing: Billing, billing_db: str
) -> None:
    for n in range(1, PAYERS + 1):
        await billing.sign(f"env-{n:03d}", n)
        await billing.usage(f"env-{n:03d}", "2026-10", vouchers=10 + n)
    await billing.close("2026-10")

    # Commits: 1 the run record, then per batch its transaction and its progress record.
    # Dying at commit 6 loses the third batch's transaction: two batches are in, the third is not.
    code, _, stderr = await run_process(billing_db, "--die-at-commit", "6")
    assert code == 137, stderr

    async def counts() -> tuple[int, int, int]:
        async with billing.sessions() as session:
            outcomes = await session.scalar(select(func.count()).select_from(t.billing_outcomes))
            invoices = await session.scalar(select(func.count()).select_from(t.invoices))
            outbox = await session.scalar(select(func.count()).where(ISSUED))
        return int(outcomes or 0), int(invoices or 0), int(outbox or 0)

    assert await counts() == (2 * BATCH, 2 * BATCH, 2 * BATCH)

    code, stdout, stderr = await run_process(billing_db)
    assert code == 0, stderr
    assert json.loads(stdout) == {"invoices_issued": PAYERS - 2 * BATCH, "already_billed": 2 * BATCH}

    assert await counts() == (PAYERS, PAYERS, PAYERS)
    invoices = await billing.invoices()
    assert sorted(i["payer_business_id"] for i in invoices) == [business_id(n) for n in range(1, PAYERS + 1)]
    assert len({i["invoice_number"] for i in invoices}) == PAYERS
    async with billing.sessions() as session:
        published = [
            InvoiceIssuedV1.model_validate_json(v)
            for v in (await session.execute(select(t.runtime_tables.outbox.c.value).where(ISSUED))).scalars()
        ]
    # Every invoice is in the outbox once: the lost batch's messages died with its transaction.
    assert sorted(m.invoice_id for m in published) == sorted(i["invoice_id"] for i in invoices)
    by_payer = {i["payer_business_id"]: i for i in invoices}
    # env-021 was in the lost batch: 31 vouchers, 21 extra, billed once in the rerun.
    assert by_payer[business_id(21)]["total_net"] == "76.59"  # 39.00 + 21 × 1.79

    code, stdout, _ = await run_process(billing_db)
    assert json.loads(stdout) == {"invoices_issued": 0, "already_billed": PAYERS}
    assert await counts() == (PAYERS, PAYERS, PAYERS)
