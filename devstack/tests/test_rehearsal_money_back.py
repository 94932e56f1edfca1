"""Rehearsals with money coming back: payments and Procountor-side customer changes on the clock (B-06, B-22)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from devstack.rehearsal import ScenarioError, parse_scenario, rehearse

pytestmark = pytest.mark.integration

SCENARIO = """
name: Paid, overpaid and moved
contracts:
  - {environment_id: env-1, business_id: 2077474-0, company_name: Maksaja Oy, package: kevyt, production_date: 2026-09-01}
  - {environment_id: env-2, business_id: 7654321-2, company_name: Liikaa Maksava Oy, package: kevyt, production_date: 2026-09-01}
payments:
  # Pays its September invoice (number 100001) exactly; then pays again with nothing open: a refund (B-06).
  - {at: "2026-10-05T12:00:00+03:00", payer: 2077474-0, amount: "{gross}", invoice_number: 100001}
  - {at: "2026-10-06T12:00:00+03:00", payer: 2077474-0, amount: "12.50"}
  # Pays half of its invoice: partly paid, half open.
  - {at: "2026-10-07T12:00:00+03:00", payer: 7654321-2, amount: "10.00"}
procountor_changes:
  - at: "2026-10-15T09:00:00+03:00"
    business_id: 2077474-0
    company_name: Maksaja Oy
    billing_address: {street: Hämeenkatu 3, postal_code: "33100", city: Tampere}
    billing_channel: einvoice
    einvoice_address: {address: "003720774740", operator: "003723327487"}
runs: [2026-10-01, 2026-11-02]
"""


async def test_payments_refunds_paid_and_open_amounts_and_a_procountor_address_change_are_rehearsed(
    postgres_admin_url: str,
) -> None:
    first = await rehearse(SCENARIO.replace("{gross}", "1.00"), admin_url=postgres_admin_url)
    gross = next(i for i in first.invoices if i["invoice_number"] == "100001")["total_gross"]

    result = await rehearse(SCENARIO.replace("{gross}", gross), admin_url=postgres_admin_url)
    invoices = {(i["payer_business_id"], i["billing_period"]): i for i in result.invoices}
    september_a, september_b = invoices[("2077474-0", "2026-09")], invoices[("7654321-2", "2026-09")]

    assert september_a["status"] == "paid"
    assert september_a["open_amount"] == "0.00"
    assert september_b["paid_amount"] == "10.00"
    assert Decimal(september_b["open_amount"]) == Decimal(september_b["total_gross"]) - 10
    assert [p.payment_id for p in result.payments] == ["rehearsal-1", "rehearsal-2", "rehearsal-3"]
    assert result.payments[1].refunded == "12.50"  # B-06: nothing open, the money goes back
    assert [(r.payer_business_id, r.amount, r.reason) for r in result.refunds] == [
        ("2077474-0", "12.50", "no open invoice")
    ]
    # B-22: the address changed in Procountor on 15 October is on the October invoice.
    assert invoices[("2077474-0", "2026-10")]["billing_address"]["city"] == "Tampere"
    assert september_a["billing_address"]["city"] == "Helsinki"


def test_a_payment_without_an_amount_is_refused_with_its_place() -> None:
    with pytest.raises(ScenarioError, match=r"payments\[0\]"):
        parse_scenario(
            "runs: [2026-11-02]\npayments:\n  - {at: 2026-10-05T12:00:00+03:00, payer: 2077474-0}\n"
        )
