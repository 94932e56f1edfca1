"""Charge rules of one environment-month and invoice totals (B-01…B-18, I-07)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.billing.domain import (
    ChargeKind,
    ChargeLine,
    EnvironmentContract,
    MinimumInvoiceReason,
    MonthlyUsage,
    Unit,
    assemble_invoice,
    charge_lines,
    due_date,
    minimum_invoice_decision,
)
from invoicing.calendar import YearMonth
from invoicing.money import cents, vat_amount
from invoicing.prices.domain import (
    PackageCode,
    PackagePrice,
    PriceList,
    ServiceProductPrice,
    UnknownPriceError,
)
from invoicing.prices.loader import sample_price_book, shipped_vat_rates

D = Decimal
VAT = D("25.5")
OCT_2026 = YearMonth(2026, 10)


def _price(code: PackageCode, **overrides: object) -> PackagePrice:
    fields: dict[str, object] = {
        "package": code,
        "name": f"Procountor {code.value.capitalize()}",
        "monthly_fee": D("39.00"),
        "included_vouchers": 10,
        "included_payees": 1,
        "extra_voucher_price": D("1.79"),
        "extra_payee_price": D("9.90"),
        "einvoice_send_price": D("0.35"),
        "einvoice_receive_price": D("0.25"),
        "minimum_invoice_applies": True,
    }
    fields.update(overrides)
    return PackagePrice(**fields)  # type: ignore[arg-type]


PRICES = PriceList(
    id="test",
    valid_from=dt.date(2024, 1, 1),
    valid_to=None,
    packages=(
        _price(PackageCode.KEVYT),
        _price(PackageCode.ALKU, monthly_fee=D("19.00"), included_vouchers=5, included_payees=0),
        _price(
            PackageCode.JOUSTO,
            monthly_fee=D("0.00"),
            included_vouchers=0,
            included_payees=0,
            extra_voucher_price=D("1.49"),
            minimum_monthly_charge=D("49.00"),
        ),
        _price(
            PackageCode.TALLENNUS,
            monthly_fee=D("0.00"),
            included_vouchers=0,
            included_payees=0,
            extra_voucher_price=D("0.00"),
            extra_payee_price=D("0.00"),
            user_price=D("12.00"),
            included_users=1,
            minimum_invoice_applies=False,
        ),
        _price(
            PackageCode.ALLEKIRJOITUS,
            monthly_fee=D("0.00"),
            signature_price=D("2.25"),
        ),
    ),
    service_products=(
        ServiceProductPrice(code="KIRJANPITO-TUNTI", name="Kirjanpitotyö", hourly_rate=D("75.00")),
        ServiceProductPrice(code="KONSULTOINTI-TUNTI", name="Konsultointi", hourly_rate=D("120.00")),
    ),
)


def _contract(
    package: PackageCode = PackageCode.KEVYT,
    *,
    environment_id: str = "env-1",
    production_date: dt.date = dt.date(2026, 1, 1),
    end_date: dt.date | None = None,
) -> EnvironmentContract:
    return EnvironmentContract(
        environment_id=environment_id,
        package=package,
        production_date=production_date,
        end_date=end_date,
    )


def _charge(
    contract: EnvironmentContract, usage: MonthlyUsage, month: YearMonth = OCT_2026
) -> list[ChargeLine]:
    return charge_lines(contract, usage, month=month, price_list=PRICES, vat_rate=VAT)


def _by_kind(lines: list[ChargeLine]) -> dict[ChargeKind, ChargeLine]:
    return {ln.kind: ln for ln in lines}


def test_b08_kevyt_with_13_vouchers_charges_3_extra_vouchers() -> None:
    lines = _by_kind(_charge(_contract(), MonthlyUsage(vouchers=13)))
    extra = lines[ChargeKind.EXTRA_VOUCHER]
    assert extra.quantity == 3
    assert extra.unit is Unit.PIECE
    assert extra.unit_price == D("1.79")
    assert extra.net == D("5.37")
    assert extra.product_code == "EXTRA-VOUCHER"


def test_b08_vouchers_within_the_included_count_cost_nothing_extra() -> None:
    lines = _charge(_contract(), MonthlyUsage(vouchers=10))
    assert [ln.kind for ln in lines] == [ChargeKind.MONTHLY_FEE]


def test_b12_kevyt_with_2_distinct_payees_charges_1_extra_payee() -> None:
    extra = _by_kind(_charge(_contract(), MonthlyUsage(payees=2)))[ChargeKind.EXTRA_PAYEE]
    assert (extra.quantity, extra.unit, extra.net) == (D(1), Unit.PERSON, D("9.90"))


def test_b12_alku_includes_no_payees() -> None:
    contract = _contract(PackageCode.ALKU)
    extra = _by_kind(_charge(contract, MonthlyUsage(payees=1)))[ChargeKind.EXTRA_PAYEE]
    assert extra.quantity == 1


def test_b18_seven_extra_vouchers_at_25_5_percent_carry_3_20_vat_on_the_total() -> None:
    lines = _charge(_contract(), MonthlyUsage(vouchers=17))
    extra = [ln for ln in lines if ln.kind is ChargeKind.EXTRA_VOUCHER]
    assert extra[0].net == D("12.53")
    totals = assemble_invoice(extra)
    assert totals.total_net == D("12.53")
    assert totals.total_vat == D("3.20")
    assert totals.total_gross == D("15.73")


def test_b18_seven_separate_voucher_lines_also_get_vat_on_their_sum_not_per_line() -> None:
    line = _by_kind(_charge(_contract(), MonthlyUsage(vouchers=11)))[ChargeKind.EXTRA_VOUCHER]
    totals = assemble_invoice([line] * 7)
    assert totals.total_net == D("12.53")
    assert totals.total_vat == D("3.20")  # per line would be 7 × 0.46 = 3.22


def test_b02_production_month_is_charged_the_full_monthly_fee_whatever_the_day() -> None:
    contract = _contract(production_date=dt.date(2026, 10, 31))
    lines = _charge(contract, MonthlyUsage())
    assert len(lines) == 1
    fee = lines[0]
    assert fee.kind is ChargeKind.MONTHLY_FEE
    assert (fee.quantity, fee.unit, fee.net) == (D(1), Unit.MONTH, D("39.00"))
    assert (fee.period_start, fee.period_end) == (dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert fee.product_code == "KEVYT-MONTHLY"
    assert fee.vat_rate == VAT


def test_b01_a_month_before_the_production_month_is_not_charged() -> None:
    contract = _contract(production_date=dt.date(2026, 11, 1))
    assert _charge(contract, MonthlyUsage(vouchers=50, payees=3)) == []


def test_b27_a_month_after_the_contract_ended_is_not_charged() -> None:
    contract = _contract(end_date=dt.date(2026, 9, 30))
    assert _charge(contract, MonthlyUsage(vouchers=50)) == []
    assert _charge(contract, MonthlyUsage(), YearMonth(2026, 9)) != []


def test_b13_sent_and_received_einvoices_are_charged_per_message_separately() -> None:
    lines = _by_kind(_charge(_contract(), MonthlyUsage(einvoices_sent=4, einvoices_received=3)))
    sent, received = lines[ChargeKind.EINVOICE_SENT], lines[ChargeKind.EINVOICE_RECEIVED]
    assert (sent.quantity, sent.unit, sent.net) == (D(4), Unit.MESSAGE, D("1.40"))
    assert (received.quantity, received.net) == (D(3), D("0.75"))
    assert "Myyntilasku verkkolaskuna" in sent.description
    assert "Ostolasku verkkolaskuna" in received.description


def test_b14_jousto_with_no_usage_is_charged_the_minimum() -> None:
    lines = _charge(_contract(PackageCode.JOUSTO), MonthlyUsage())
    assert [ln.kind for ln in lines] == [ChargeKind.MINIMUM_CHARGE]
    assert lines[0].net == D("49.00")


def test_b14_jousto_minimum_line_makes_up_the_difference_to_usage() -> None:
    lines = _charge(_contract(PackageCode.JOUSTO), MonthlyUsage(vouchers=10, einvoices_sent=2))
    kinds = _by_kind(lines)
    assert kinds[ChargeKind.EXTRA_VOUCHER].net == D("14.90")
    assert kinds[ChargeKind.EINVOICE_SENT].net == D("0.70")
    assert kinds[ChargeKind.MINIMUM_CHARGE].net == D("33.40")
    assert sum(ln.net for ln in lines) == D("49.00")


def test_b14_jousto_usage_above_the_minimum_needs_no_minimum_line() -> None:
    lines = _charge(_contract(PackageCode.JOUSTO), MonthlyUsage(vouchers=40))
    assert ChargeKind.MINIMUM_CHARGE not in _by_kind(lines)


def test_b14_billable_hours_do_not_count_towards_the_minimum() -> None:
    usage = MonthlyUsage(billable_hours={"KIRJANPITO-TUNTI": D("2")})
    kinds = _by_kind(_charge(_contract(PackageCode.JOUSTO), usage))
    assert kinds[ChargeKind.MINIMUM_CHARGE].net == D("49.00")
    assert kinds[ChargeKind.SERVICE_HOURS].net == D("150.00")


@given(
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=50),
)
def test_b14_jousto_software_charges_never_fall_below_the_minimum(
    vouchers: int, payees: int, sent: int
) -> None:
    usage = MonthlyUsage(vouchers=vouchers, payees=payees, einvoices_sent=sent)
    lines = _charge(_contract(PackageCode.JOUSTO), usage)
    total = sum((ln.net for ln in lines), D(0))
    assert total >= D("49.00")
    if ChargeKind.MINIMUM_CHARGE in _by_kind(lines):
        assert total == D("49.00")


def test_b16_tallennus_charges_billable_users_above_the_included_at_the_user_price() -> None:
    lines = _charge(_contract(PackageCode.TALLENNUS), MonthlyUsage(billable_users=4))
    assert [ln.kind for ln in lines] == [ChargeKind.USER]
    users = lines[0]
    assert (users.quantity, users.unit, users.unit_price, users.net) == (
        D(3),
        Unit.USER,
        D("12.00"),
        D("36.00"),
    )
    assert users.product_code == "TALLENNUS-USER"


def test_b16_tallennus_with_only_included_users_has_no_charge() -> None:
    assert _charge(_contract(PackageCode.TALLENNUS), MonthlyUsage(billable_users=1)) == []


def test_signatures_are_charged_per_signer() -> None:
    lines = _charge(_contract(PackageCode.ALLEKIRJOITUS), MonthlyUsage(signatures=3))
    assert _by_kind(lines)[ChargeKind.SIGNATURE].net == D("6.75")


def test_i07_billable_hours_are_charged_per_service_product_at_its_rate() -> None:
    usage = MonthlyUsage(billable_hours={"KONSULTOINTI-TUNTI": D("1.25"), "KIRJANPITO-TUNTI": D("7.5")})
    hours = [ln for ln in _charge(_contract(), usage) if ln.kind is ChargeKind.SERVICE_HOURS]
    assert [(ln.product_code, ln.quantity, ln.net) for ln in hours] == [
        ("KIRJANPITO-TUNTI", D("7.5"), D("562.50")),
        ("KONSULTOINTI-TUNTI", D("1.25"), D("150.00")),
    ]
    assert all(ln.unit is Unit.HOUR and not ln.kind.is_software for ln in hours)


def test_i07_hours_of_an_unpriced_service_product_are_refused() -> None:
    with pytest.raises(UnknownPriceError, match="SIIVOUS"):
        _charge(_contract(), MonthlyUsage(billable_hours={"SIIVOUS": D("1")}))


def test_b07_charging_with_a_price_list_not_in_force_is_refused() -> None:
    with pytest.raises(ValueError, match="not in force"):
        _charge(_contract(), MonthlyUsage(), YearMonth(2023, 12))


def test_usage_counts_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="vouchers"):
        MonthlyUsage(vouchers=-1)
    with pytest.raises(ValueError, match="negative"):
        MonthlyUsage(billable_hours={"X": D("-1")})


def test_b17_invoice_lines_are_grouped_per_environment_keeping_rule_order() -> None:
    env_b = _charge(_contract(environment_id="env-b"), MonthlyUsage(vouchers=12, payees=2))
    env_a = _charge(_contract(environment_id="env-a"), MonthlyUsage(einvoices_sent=1))
    mixed = [env_b[0], env_a[0], env_b[1], env_a[1], env_b[2]]
    totals = assemble_invoice(mixed)
    assert [ln.environment_id for ln in totals.lines] == ["env-a"] * 2 + ["env-b"] * 3
    assert [ln.kind for ln in totals.lines[2:]] == list(_by_kind(env_b))


def test_b18_totals_are_kept_per_vat_rate() -> None:
    august = charge_lines(
        _contract(production_date=dt.date(2024, 1, 1)),
        MonthlyUsage(),
        month=YearMonth(2024, 8),
        price_list=PRICES,
        vat_rate=shipped_vat_rates().rate_for(YearMonth(2024, 8)),
    )
    september = charge_lines(
        _contract(production_date=dt.date(2024, 1, 1)),
        MonthlyUsage(),
        month=YearMonth(2024, 9),
        price_list=PRICES,
        vat_rate=shipped_vat_rates().rate_for(YearMonth(2024, 9)),
    )
    totals = assemble_invoice(august + september)
    assert [(v.vat_rate, v.net, v.vat) for v in totals.vat_totals] == [
        (D("25.5"), D("39.00"), D("9.95")),
        (D("24"), D("39.00"), D("9.36")),
    ]
    assert (totals.total_net, totals.total_vat, totals.total_gross) == (
        D("78.00"),
        D("19.31"),
        D("97.31"),
    )


def test_b18_an_empty_invoice_totals_zero() -> None:
    totals = assemble_invoice([])
    assert (totals.lines, totals.vat_totals, totals.total_gross) == ((), (), D("0.00"))


line_nets = st.decimals(min_value=D("0"), max_value=D("10000"), places=2)
rates = st.sampled_from([D("25.5"), D("24"), D("14"), D("10"), D("0")])


@given(st.lists(st.tuples(line_nets, rates), max_size=30))
def test_b18_totals_add_up_and_vat_is_within_a_cent_per_rate_of_exact(
    items: list[tuple[Decimal, Decimal]],
) -> None:
    template = _charge(_contract(), MonthlyUsage())[0]
    lines = [dataclasses.replace(template, net=net, unit_price=net, vat_rate=rate) for net, rate in items]
    totals = assemble_invoice(lines)
    assert totals.total_net == sum((net for net, _ in items), D("0.00"))
    assert totals.total_gross == totals.total_net + totals.total_vat
    assert totals.total_vat == sum((v.vat for v in totals.vat_totals), D(0))
    exact = sum((net * rate / 100 for net, rate in items), D(0))
    assert abs(totals.total_vat - exact) <= D("0.005") * len(totals.vat_totals)
    for v in totals.vat_totals:
        assert v.vat == vat_amount(v.net, v.vat_rate)
        assert v.vat == cents(v.vat)


def test_b05_due_date_is_invoice_date_plus_the_payment_term() -> None:
    assert due_date(dt.date(2026, 11, 2), 10) == dt.date(2026, 11, 12)
    assert due_date(dt.date(2026, 12, 28), 10) == dt.date(2027, 1, 7)
    with pytest.raises(ValueError, match="negative"):
        due_date(dt.date(2026, 11, 2), -1)


@pytest.mark.parametrize(
    ("net", "run_month", "is_final", "applies", "send", "reason"),
    [
        ("9.99", "2026-05", False, True, False, MinimumInvoiceReason.BELOW_MINIMUM),
        ("10.00", "2026-05", False, True, True, MinimumInvoiceReason.REACHED_MINIMUM),
        ("9.99", "2026-01", False, True, True, MinimumInvoiceReason.HALF_YEAR_RUN),
        ("0.50", "2026-07", False, True, True, MinimumInvoiceReason.HALF_YEAR_RUN),
        ("9.99", "2026-05", True, True, True, MinimumInvoiceReason.FINAL_INVOICE),
        ("3.00", "2026-05", False, False, True, MinimumInvoiceReason.NOT_APPLICABLE),
    ],
)
def test_b15_minimum_invoice_holds_small_invoices_except_half_year_final_and_exempt(
    net: str,
    run_month: str,
    is_final: bool,
    applies: bool,
    send: bool,
    reason: MinimumInvoiceReason,
) -> None:
    decision = minimum_invoice_decision(
        D(net), YearMonth.parse(run_month), is_final=is_final, applies=applies
    )
    assert (decision.send, decision.reason) == (send, reason)


def test_sample_price_book_bills_a_kevyt_month_end_to_end() -> None:
    month = YearMonth(2026, 10)
    price_list = sample_price_book().price_list_for(month)
    contract = _contract()
    vat_rate = shipped_vat_rates().rate_for(month, price_list.package(contract.package).vat_category)
    lines = charge_lines(
        contract,
        MonthlyUsage(vouchers=13, payees=2, einvoices_sent=1),
        month=month,
        price_list=price_list,
        vat_rate=vat_rate,
    )
    totals = assemble_invoice(lines)
    # 39.00 + 3 × 1.79 + 9.90 + 0.35 (SAMPLE prices)
    assert totals.total_net == D("54.62")
    assert totals.total_vat == D("13.93")  # 54.62 × 25.5 % = 13.9281
    assert due_date(dt.date(2026, 11, 2), price_list.payment_term_days) == dt.date(2026, 11, 12)
