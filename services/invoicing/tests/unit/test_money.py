"""Exact money, commercial rounding and effective-dated VAT rates (B-18)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.calendar import YearMonth
from invoicing.money import cents, vat_amount
from invoicing.prices.loader import shipped_vat_rates
from invoicing.prices.vat import (
    UnknownVatRateError,
    VatCategory,
    VatRatePeriod,
    VatRatesFormatError,
    VatRateTable,
    parse_vat_rates,
)

amounts = st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=5, allow_nan=False)


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        ("0.005", "0.01"),
        ("0.004", "0.00"),
        ("0.015", "0.02"),
        ("0.025", "0.03"),  # half up, not half even
        ("3.19515", "3.20"),
        ("-0.005", "-0.01"),  # half away from zero for credits
        ("12", "12.00"),
    ],
)
def test_b18_cents_rounds_half_up_to_two_decimals(amount: str, rounded: str) -> None:
    result = cents(Decimal(amount))
    assert result == Decimal(rounded)
    assert result.as_tuple().exponent == -2


def test_b18_cents_refuses_floats() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        cents(1.79)  # type: ignore[arg-type]


def test_b18_vat_on_the_total_of_seven_extra_vouchers_is_3_20() -> None:
    net = cents(7 * Decimal("1.79"))
    assert net == Decimal("12.53")
    assert vat_amount(net, Decimal("25.5")) == Decimal("3.20")
    # Per-line VAT would have given 3.22; B-18 decides for VAT on the sum.
    assert 7 * vat_amount(Decimal("1.79"), Decimal("25.5")) == Decimal("3.22")


@given(amounts)
def test_b18_cents_is_within_half_a_cent_and_idempotent(amount: Decimal) -> None:
    rounded = cents(amount)
    assert abs(rounded - amount) <= Decimal("0.005")
    assert cents(rounded) == rounded


@given(amounts)
def test_b18_cents_is_symmetric_around_zero(amount: Decimal) -> None:
    assert cents(-amount) == -cents(amount)


@given(
    st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=2),
    st.sampled_from([Decimal("0"), Decimal("10"), Decimal("13.5"), Decimal("24"), Decimal("25.5")]),
)
def test_b18_vat_is_the_exact_product_rounded_half_up(net: Decimal, rate: Decimal) -> None:
    vat = vat_amount(net, rate)
    assert abs(vat - net * rate / 100) <= Decimal("0.005")
    assert vat.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("month", "rate"),
    [
        ("2013-01", "24"),
        ("2024-08", "24"),
        ("2024-09", "25.5"),
        ("2026-10", "25.5"),
    ],
)
def test_b18_general_rate_follows_the_service_month(month: str, rate: str) -> None:
    assert shipped_vat_rates().rate_for(YearMonth.parse(month)) == Decimal(rate)


def test_b18_august_2024_usage_billed_in_september_takes_24_percent() -> None:
    run_month = YearMonth(2024, 9)
    assert shipped_vat_rates().rate_for(run_month.prev()) == Decimal("24")


def test_reduced_rate_drops_to_13_5_in_2026() -> None:
    assert shipped_vat_rates().rate_for(YearMonth(2025, 12), VatCategory.REDUCED) == Decimal("14")
    assert shipped_vat_rates().rate_for(YearMonth(2026, 1), VatCategory.REDUCED) == Decimal("13.5")


def test_a_month_before_any_known_rate_is_refused() -> None:
    with pytest.raises(UnknownVatRateError):
        shipped_vat_rates().rate_for(YearMonth(2012, 12))


def test_vat_rates_change_only_on_the_first_of_a_month() -> None:
    with pytest.raises(ValueError, match="first of a month"):
        VatRatePeriod(VatCategory.GENERAL, dt.date(2024, 9, 15), Decimal("25.5"))


def test_two_rates_of_a_category_cannot_start_on_the_same_day() -> None:
    period = VatRatePeriod(VatCategory.GENERAL, dt.date(2024, 9, 1), Decimal("25.5"))
    with pytest.raises(ValueError, match="same day"):
        VatRateTable((period, period))


def test_vat_rates_must_be_decimal_percentages() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        VatRatePeriod(VatCategory.GENERAL, dt.date(2024, 9, 1), 25.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"0\.\.100"):
        VatRatePeriod(VatCategory.GENERAL, dt.date(2024, 9, 1), Decimal("-1"))


# --- B-07: VAT rates are data, validated like the price books ---


def test_b07_the_shipped_vat_rates_are_the_finnish_rates_and_their_history() -> None:
    shipped = shipped_vat_rates()
    assert {c: shipped.rate_for(YearMonth(2026, 1), c) for c in VatCategory} == {
        VatCategory.GENERAL: Decimal("25.5"),
        VatCategory.REDUCED: Decimal("13.5"),
        VatCategory.LOWER_REDUCED: Decimal("10"),
        VatCategory.ZERO: Decimal("0"),
    }


def test_b07_a_new_rate_is_a_new_entry_in_the_data_and_applies_from_its_service_month() -> None:
    shipped = (Path(__file__).parents[2] / "src/invoicing/price_lists/vat_rates.yaml").read_text("utf-8")
    changed = parse_vat_rates(shipped + '  - {category: general, valid_from: 2027-07-01, rate: "26"}\n')
    assert changed.rate_for(YearMonth(2027, 6)) == Decimal("25.5")
    assert changed.rate_for(YearMonth(2027, 7)) == Decimal("26")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("{category: general, valid_from: 2027-01-01, rate: 26.5}", "quoted decimal string"),
        ('{category: general, valid_from: 2027-01-15, rate: "26"}', "first of a month"),
        ('{category: general, valid_from: 2024-09-01, rate: "26"}', "same day"),
        ('{category: luxury, valid_from: 2027-01-01, rate: "30"}', "category"),
        ('{category: general, valid_from: 2027-01-01, rate: "100"}', "0..100"),
        ('{category: general, valid_from: 2027-01-01, rate: "26", note: x}', "unknown keys"),
    ],
)
def test_b07_vat_rate_data_that_does_not_fit_is_refused_with_the_reason(entry: str, reason: str) -> None:
    shipped = (Path(__file__).parents[2] / "src/invoicing/price_lists/vat_rates.yaml").read_text("utf-8")
    with pytest.raises(VatRatesFormatError, match=reason):
        parse_vat_rates(shipped + f"  - {entry}\n")


def test_b07_every_category_needs_a_rate() -> None:
    with pytest.raises(VatRatesFormatError, match="no rate for the categories"):
        parse_vat_rates('vat_rates:\n  - {category: general, valid_from: 2013-01-01, rate: "24"}\n')
