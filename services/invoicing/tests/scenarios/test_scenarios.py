"""Time-travelling billing scenarios: each YAML file here is rehearsed and its invoices must be exactly `expect`.

A scenario (docs/rehearsal.md) goes through the real metering rules and the real billing run on
PostgreSQL with a test clock (`devstack.rehearsal`). Its `expect` section was worked out by hand
from the SPEC and the sample prices; each line is
`environment | product | service month | quantity | unit price | net | VAT %` plus
`| correction` or `| carried from YYYY-MM`, the VAT totals `rate | net | VAT`, the totals
`net | VAT | gross`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
import yaml

from devstack.infra import async_url, database_url, drop_database
from devstack.rehearsal import RehearsalResult, parse_scenario, rehearse_in, result_schema
from devstack.testing import migrate

pytestmark = pytest.mark.integration

SCENARIOS = sorted(Path(__file__).parent.glob("*.yaml"))
TEXTS = {p: p.read_text(encoding="utf-8") for p in SCENARIOS}


async def _admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def rehearsal_template(postgres_admin_url: str) -> Iterator[str]:
    """Metering, invoicing and partners migrated once; each scenario plays on a copy."""
    name = f"tmpl_rehearsal_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        url = async_url(database_url(postgres_admin_url, name))
        asyncio.run(migrate(url, "metering:migrations"))
        asyncio.run(migrate(url, "invoicing:migrations"))
        asyncio.run(migrate(url, "partners:migrations"))  # the rehearsal computes tiers with partners' code
        yield name
    finally:
        drop_database(postgres_admin_url, name)


@pytest_asyncio.fixture
async def scenario_db(postgres_admin_url: str, rehearsal_template: str) -> AsyncIterator[str]:
    name = f"scenario_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{rehearsal_template}"')
    try:
        yield async_url(database_url(postgres_admin_url, name))
    finally:
        drop_database(postgres_admin_url, name)


def _line(ln: dict[str, Any]) -> str:
    parts = [
        ln["environment_id"],
        ln["product_code"],
        ln["period_start"][:7],
        ln["quantity"],
        ln["unit_price"],
        ln["net"],
        ln["vat_rate"],
    ]
    if ln["is_correction"]:
        parts.append("correction")
    if ln.get("carried_from_period"):
        parts.append(f"carried from {ln['carried_from_period']}")
    return " | ".join(parts)


def observed(result: RehearsalResult) -> dict[str, Any]:
    """The rehearsal's result in the compact shape of `expect`."""
    return {
        "runs": [
            " | ".join(
                [str(r.run_date), r.billing_month, r.status, f"issued {r.invoices_issued}", f"held {r.held}"]
            )
            for r in result.runs
        ],
        "invoices": [
            {
                "number": i["invoice_number"],
                "payer": i["payer_id"],
                "period": i["billing_period"],
                "date": i["invoice_date"],
                "due": i["due_date"],
                "reference": i["reference_number"],
                "lines": [_line(ln) for ln in i["lines"]],
                "vat": [f"{v['vat_rate']} | {v['net']} | {v['vat']}" for v in i["vat_totals"]],
                "totals": f"{i['total_net']} | {i['total_vat']} | {i['total_gross']}",
            }
            for i in result.invoices
        ],
        "held": {h.payer_id: h.held_net for h in result.held if h.held_net != "0.00"},
        "refusals": [f"{r.type}: {r.reason}" for r in result.refusals],
    }


def _expected(path: Path) -> dict[str, Any]:
    expect = yaml.safe_load(TEXTS[path])["expect"]
    return {
        "runs": expect.get("runs", []),
        "invoices": [
            {k: str(v) if not isinstance(v, list) else v for k, v in invoice.items()}
            for invoice in expect.get("invoices", [])
        ],
        "held": {str(k): str(v) for k, v in (expect.get("held") or {}).items()},
        "refusals": expect.get("refusals", []),
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
async def test_scenario_bills_exactly_what_it_expects(path: Path, scenario_db: str) -> None:
    scenario = parse_scenario(TEXTS[path])
    result = await rehearse_in(scenario_db, scenario)
    got, want = observed(result), _expected(path)
    if not want["runs"]:
        got["runs"] = []
    # Section by section and invoice by invoice, so that a difference shows where it is.
    assert got["runs"] == want["runs"]
    for number, (got_invoice, want_invoice) in enumerate(
        zip(got["invoices"], want["invoices"], strict=False)
    ):
        assert (number, got_invoice) == (number, want_invoice)
    assert got == want


def test_the_documented_json_schema_of_the_rehearsal_output_is_current() -> None:
    documented = Path(__file__).parents[4] / "docs" / "rehearsal-result.schema.json"
    assert json.loads(documented.read_text(encoding="utf-8")) == result_schema(), (
        "regenerate it: python -m devstack.rehearsal schema > docs/rehearsal-result.schema.json"
    )
