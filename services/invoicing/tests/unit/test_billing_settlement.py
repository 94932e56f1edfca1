"""Pure rules of the run: own-use discounts, corrections, the minimum invoice, production months (credit notes: test_receivables)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from billing_contracts.partners import PartnerTier
from invoicing.billing.domain import (
    ChargeKind,
    ChargeLine,
    EnvironmentContract,
    MinimumInvoiceReason,
    MonthlyUsage,
    SettlementKind,
    TierBook,
    Unit,
    charge_lines,
    correction_lines,
    counts_from_production_date,
    settle_payer,
    software_net_by_reseller,
    usage_from_production_date,
)
from invoicing.calendar import HELSINKI, YearMonth
from invoicing.prices.domain import PackageCode
from invoicing.prices.loader import sample_price_book

D = Decimal
OCT = YearMonth(2026, 10)
PRICES = sample_price_book().price_list_for(OCT)
VAT = D("25.5")


def contract(
    package: PackageCode = PackageCode.KEVYT, *, own_use: bool = False, env: str = "env-1"
) -> EnvironmentContract:
    return EnvironmentContract(
        environment_id=env, package=package, production_date=dt.date(2026, 1, 1), own_use=own_use
    )


def lines(c: EnvironmentContract, usage: MonthlyUsage, tier: PartnerTier | None = None) -> list[ChargeLine]:
    return charge_lines(c, usage, month=OCT, price_list=PRICES, vat_rate=VAT, own_use_tier=tier)


def summary(ls: list[ChargeLine]) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    return [(ln.product_code, ln.quantity, ln.unit_price, ln.net) for ln in ls]


# --- P-07 ---


@pytest.mark.parametrize(
    ("tier", "discount"),
    [(PartnerTier.SILVER, "-11.09"), (PartnerTier.GOLD, "-22.19"), (PartnerTier.PLATINUM, "-44.37")],
)
def test_p07_the_discount_is_the_tiers_percent_of_the_software_charges_rounded_half_up(
    tier: PartnerTier, discount: str
) -> None:
    # 39.00 + 3 × 1.79 = 44.37: 25 % = 11.0925, 50 % = 22.185, 100 % = 44.37.
    got = lines(contract(own_use=True), MonthlyUsage(vouchers=13), tier)
    assert got[-1].kind is ChargeKind.OWN_USE_DISCOUNT
    assert got[-1].net == D(discount)


def test_p07_the_partner_tier_has_no_own_use_discount_and_no_line() -> None:
    got = lines(contract(own_use=True), MonthlyUsage(), PartnerTier.PARTNER)
    assert [ln.kind for ln in got] == [ChargeKind.MONTHLY_FEE]


def test_p07_no_discount_for_an_environment_that_is_not_the_partners_own() -> None:
    got = lines(contract(own_use=False), MonthlyUsage(), PartnerTier.PLATINUM)
    assert [ln.kind for ln in got] == [ChargeKind.MONTHLY_FEE]


def test_p07_service_hours_are_not_discounted_and_come_after_the_discount() -> None:
    usage = MonthlyUsage(billable_hours={"KIRJANPITO-TUNTI": D("2")})
    got = lines(contract(own_use=True), usage, PartnerTier.GOLD)
    assert summary(got) == [
        ("KEVYT-MONTHLY", D(1), D("39.00"), D("39.00")),
        ("OWN-USE-DISCOUNT", D(1), D("-19.50"), D("-19.50")),
        ("KIRJANPITO-TUNTI", D(2), D("75.00"), D("150.00")),
    ]


def test_p07_the_tier_in_effect_is_the_latest_change_effective_in_or_before_the_month() -> None:
    book = TierBook(
        {"f": ((YearMonth(2026, 3), PartnerTier.SILVER), (YearMonth(2026, 10), PartnerTier.GOLD))}
    )
    assert book.tier_for("f", YearMonth(2026, 2)) is None
    assert book.tier_for("f", YearMonth(2026, 9)) is PartnerTier.SILVER
    assert book.tier_for("f", OCT) is PartnerTier.GOLD
    assert book.tier_for(None, OCT) is None
    assert book.tier_for("other", OCT) is None


# --- B-04 corrections ---


def correct(
    c: EnvironmentContract, before: MonthlyUsage, after: MonthlyUsage, tier: PartnerTier | None = None
) -> list[ChargeLine]:
    return correction_lines(
        c, previous=before, current=after, month=OCT, price_list=PRICES, vat_rate=VAT, own_use_tier=tier
    )


def test_b04_a_correction_bills_the_difference_of_the_month_priced_with_its_rules() -> None:
    got = correct(contract(), MonthlyUsage(vouchers=9), MonthlyUsage(vouchers=13))
    assert summary(got) == [("EXTRA-VOUCHER", D(3), D("1.79"), D("5.37"))]  # 9 were all included
    assert got[0].is_correction
    assert got[0].description == "Korjaus / Correction 2026-10: Lisätositteet / Extra vouchers"
    assert (got[0].period_start, got[0].period_end) == (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


def test_b04_a_downward_correction_is_negative_and_a_line_that_disappears_is_corrected_away() -> None:
    got = correct(contract(), MonthlyUsage(vouchers=12, payees=2), MonthlyUsage(vouchers=11, payees=1))
    assert summary(got) == [
        ("EXTRA-VOUCHER", D(-1), D("1.79"), D("-1.79")),
        ("EXTRA-PAYEE", D(-1), D("9.90"), D("-9.90")),
    ]


def test_b04_unchanged_figures_need_no_correction() -> None:
    assert correct(contract(), MonthlyUsage(vouchers=3), MonthlyUsage(vouchers=8)) == []


def test_b04_b14_a_minimum_charge_moves_against_the_usage_in_one_line_of_the_difference() -> None:
    got = correct(contract(PackageCode.JOUSTO), MonthlyUsage(vouchers=20), MonthlyUsage(vouchers=25))
    assert summary(got) == [
        ("EXTRA-VOUCHER", D(5), D("1.49"), D("7.45")),
        ("MINIMUM-CHARGE", D(1), D("-7.45"), D("-7.45")),
    ]


def test_b04_p07_a_correction_of_an_own_use_month_corrects_its_discount_too() -> None:
    got = correct(
        contract(own_use=True), MonthlyUsage(vouchers=10), MonthlyUsage(vouchers=12), PartnerTier.GOLD
    )
    # 39.00 → 42.58: discount 19.50 → 21.29
    assert summary(got) == [
        ("EXTRA-VOUCHER", D(2), D("1.79"), D("3.58")),
        ("OWN-USE-DISCOUNT", D(1), D("-1.79"), D("-1.79")),
    ]


# --- B-15 settlement ---


def line(
    net: str,
    *,
    env: str = "env-1",
    month: YearMonth = OCT,
    carried: YearMonth | None = None,
    correction: bool = False,
) -> ChargeLine:
    return ChargeLine(
        environment_id=env,
        kind=ChargeKind.SIGNATURE,
        product_code="SIGNATURE",
        description="Allekirjoitukset / Signatures",
        quantity=D(1),
        unit=Unit.PIECE,
        unit_price=D(net),
        net=D(net),
        vat_rate=VAT,
        period_start=month.first_day,
        period_end=month.last_day,
        carried_from=carried,
        is_correction=correction,
    )


NOV = YearMonth(2026, 11)


def test_b15_below_ten_euros_only_the_new_lines_are_held_and_the_accumulated_sum_is_reported() -> None:
    s = settle_payer(
        [line("3.00")],
        [line("4.50", month=YearMonth(2026, 9), carried=YearMonth(2026, 9))],
        run_month=NOV,
        is_final=False,
        applies=True,
    )
    assert (s.kind, s.reason, s.totals.total_net, s.accumulated_held_net) == (
        SettlementKind.HOLD,
        MinimumInvoiceReason.BELOW_MINIMUM,
        D("3.00"),
        D("7.50"),
    )
    assert [ln.net for ln in s.lines] == [D("3.00")]


def test_b15_reaching_ten_euros_issues_everything_held_oldest_month_first() -> None:
    september = YearMonth(2026, 9)
    s = settle_payer(
        [line("6.00")],
        [line("4.00", month=september, carried=september)],
        run_month=NOV,
        is_final=False,
        applies=True,
    )
    assert (s.kind, s.reason, s.totals.total_net) == (
        SettlementKind.ISSUE,
        MinimumInvoiceReason.REACHED_MINIMUM,
        D("10.00"),
    )
    assert [(ln.service_month, ln.carried_from) for ln in s.lines] == [(september, september), (OCT, None)]


def test_b17_lines_are_grouped_per_environment_and_a_months_corrections_follow_its_lines() -> None:
    s = settle_payer(
        [
            line("5.00", env="b"),
            line("1.00", env="a", month=YearMonth(2026, 9), correction=True),
            line("9.00", env="a"),
        ],
        [],
        run_month=NOV,
        is_final=False,
        applies=True,
    )
    assert [(ln.environment_id, str(ln.service_month), ln.is_correction) for ln in s.lines] == [
        ("a", "2026-09", True),
        ("a", "2026-10", False),
        ("b", "2026-10", False),
    ]


def test_lines_netting_to_zero_settle_without_an_invoice_or_a_hold() -> None:
    s = settle_payer([line("39.00"), line("-39.00")], [], run_month=NOV, is_final=False, applies=True)
    assert (s.kind, s.accumulated_held_net) == (SettlementKind.ZERO, D("0.00"))


def test_a_negative_total_is_carried_unless_it_is_the_final_invoice() -> None:
    carried = settle_payer([line("-5.00")], [], run_month=YearMonth(2027, 1), is_final=False, applies=False)
    assert (carried.kind, carried.reason) == (SettlementKind.HOLD, MinimumInvoiceReason.NEGATIVE_BALANCE)
    final = settle_payer([line("-5.00")], [], run_month=NOV, is_final=True, applies=True)
    assert (final.kind, final.totals.total_net) == (SettlementKind.ISSUE, D("-5.00"))


def test_nothing_to_bill_without_lines() -> None:
    assert settle_payer([], [], run_month=NOV, is_final=False, applies=True).kind is SettlementKind.NOTHING


# --- P-08 ---


def test_p08_software_charges_per_reseller_leave_out_service_hours() -> None:
    hours = dataclasses.replace(line("75.00", env="e2"), kind=ChargeKind.SERVICE_HOURS)
    nets = software_net_by_reseller(
        [line("39.00", env="e1"), line("-9.75", env="e1"), hours, line("5.00", env="e3")],
        {"e1": "partner-1", "e2": "partner-1", "e3": None},
    )
    assert nets == {"partner-1": D("29.25")}


# --- B-01 production month ---


def test_b01_the_production_month_counts_only_what_happened_from_the_production_date() -> None:
    production = dt.date(2026, 10, 20)
    start = dt.datetime(2026, 10, 20, tzinfo=HELSINKI)
    items = {
        "vouchers": [
            {"created_at": (start - dt.timedelta(seconds=1)).isoformat(), "counted": True},
            {"created_at": start.isoformat(), "counted": True},
            {"created_at": (start + dt.timedelta(days=3)).isoformat(), "counted": False},  # voided (B-11)
        ],
        "payees": [
            {"person_id": "p1", "first_calculated_at": start - dt.timedelta(days=1)},
            {"person_id": "p2", "first_calculated_at": start + dt.timedelta(days=1)},
        ],
        "messages": [
            {"at": start.isoformat(), "direction": "sent", "charged": True},
            {"at": start.isoformat(), "direction": "received", "charged": False},
        ],
        "signatures": [{"completed_at": start.isoformat(), "signer_count": 2}],
        "hours": [
            {"work_date": "2026-10-19", "billable": True, "service_product_code": "K", "hours": "3"},
            {
                "work_date": dt.date(2026, 10, 20),
                "billable": True,
                "service_product_code": "K",
                "hours": "1.5",
            },
        ],
    }
    usage = usage_from_production_date(production, MonthlyUsage(vouchers=3, billable_users=4), items)
    assert usage == MonthlyUsage(
        vouchers=1, payees=1, einvoices_sent=1, billable_users=4, signatures=2, billable_hours={"K": D("1.5")}
    )


def test_b01_only_a_production_month_that_starts_after_its_first_day_is_recounted() -> None:
    mid = dataclasses.replace(contract(), production_date=dt.date(2026, 10, 20))
    first = dataclasses.replace(contract(), production_date=dt.date(2026, 10, 1))
    assert counts_from_production_date(mid, OCT)
    assert not counts_from_production_date(first, OCT)
    assert not counts_from_production_date(mid, YearMonth(2026, 11))
