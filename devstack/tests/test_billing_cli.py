"""`billing rehearse <scenario>`: the operators' command prints the rehearsal's invoices as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parents[2] / "services" / "invoicing" / "tests" / "scenarios"
KEVYT = SCENARIOS / "b08-b13_a_kevyt_month_of_vouchers_payees_and_messages.yaml"


def billing(*args: str, admin_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.billing_cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=os.environ | {"POSTGRES_ADMIN_URL": admin_url},
        check=False,
    )


def test_billing_rehearse_prints_the_scenarios_invoices_as_json(postgres_admin_url: str) -> None:
    expected = yaml.safe_load(KEVYT.read_text(encoding="utf-8"))["expect"]

    done = billing("rehearse", str(KEVYT), admin_url=postgres_admin_url)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["status"] for r in result["runs"]] == ["completed"]
    assert [int(i["invoice_number"]) for i in result["invoices"]] == [
        i["number"] for i in expected["invoices"]
    ]
    # "totals: net | VAT | gross" in the scenario's own notation.
    assert [i["total_gross"] for i in result["invoices"]] == [
        i["totals"].split("|")[2].strip() for i in expected["invoices"]
    ]


def test_billing_without_a_known_command_prints_its_usage_and_fails(postgres_admin_url: str) -> None:
    done = billing("bill-everyone-now", admin_url=postgres_admin_url)

    assert done.returncode == 2
    assert "usage: billing rehearse <scenario.yaml>" in done.stderr
