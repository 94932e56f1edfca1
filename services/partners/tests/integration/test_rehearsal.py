"""The rehearsal computes tiers with partners' own code and lists tier changes and commission statements."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.rehearsal import ScenarioError, parse_scenario, rehearse

pytestmark = pytest.mark.integration

SCENARIO = Path(__file__).parents[1] / "scenarios" / "p02-p08_silver_own_use_commissions_and_a_fall.yaml"


async def test_a_rehearsal_computes_the_tiers_discounts_and_statements_of_the_partner_program(
    postgres_admin_url: str,
) -> None:
    result = await rehearse(SCENARIO.read_text(encoding="utf-8"), admin_url=postgres_admin_url)

    assert [
        (c.firm_id, c.old_tier, c.new_tier, c.effective_month, c.end_customers) for c in result.tier_changes
    ] == [
        ("firm-7", None, "silver", "2026-09", 5),
        ("firm-7", "silver", "partner", "2026-12", 4),  # env-5's contract ended on 30 November (B-27)
    ]
    assert result.tier_changes[1].reason.startswith("fell to Partneri / Partner: 4 end customers")

    own = {i["billing_period"]: i for i in result.invoices if i["payer_business_id"] == "1014443-8"}
    # P-07: Silver's 25 % off the firm's own software charges, from September's bill on.
    for month in ("2026-09", "2026-10", "2026-11"):
        lines = [(ln["product_code"], ln["net"]) for ln in own[month]["lines"]]
        assert lines == [("KEVYT-MONTHLY", "39.00"), ("OWN-USE-DISCOUNT", "-9.75")]

    # P-08: one statement per month after its run: the two resold clients' invoices, 10 %.
    statements = [
        (s["month"], s["software_net_total"], s["commission_amount"]) for s in result.commission_statements
    ]
    assert statements == [
        ("2026-09", "78.00", "7.80"),
        ("2026-10", "78.00", "7.80"),
        ("2026-11", "78.00", "7.80"),
    ]
    september = result.commission_statements[0]
    assert sorted(i["payer_business_id"] for i in september["invoices"]) == ["0737546-2", "2077474-0"]

    refused = [r for r in result.refusals if r.type == "ExpertAuthorizationPassedV1"]
    assert len(refused) == 1
    assert refused[0].reason.startswith("P-04: anna has no passed online part")


def test_a_firms_tier_is_given_or_computed_not_both() -> None:
    text = SCENARIO.read_text(encoding="utf-8") + (
        "tiers:\n  - {firm_id: firm-7, old_tier: null, new_tier: gold, reason: given, end_customers: 25,\n"
        "     certified_experts: 1, authorized_experts: 0, effective_month: 2026-09}\n"
    )
    with pytest.raises(ScenarioError, match="give a firm's tier in `tiers` or compute it from `partners`"):
        parse_scenario(text)


def test_a_partner_input_of_an_unknown_type_is_refused_with_the_place() -> None:
    with pytest.raises(ScenarioError, match=r"partners\[0\]: `type` must name a partner-program input"):
        parse_scenario("name: x\nruns: [2026-10-01]\npartners:\n  - {type: VoucherCreatedV1}\n")
