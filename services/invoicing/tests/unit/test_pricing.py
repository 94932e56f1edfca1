"""Price lists as effective-dated data and their YAML form (B-05, B-07, B-15)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from billing_contracts.contracts import PackageCode as ContractPackageCode
from invoicing.calendar import YearMonth
from invoicing.prices.domain import (
    PackageCode,
    PackagePrice,
    PriceBook,
    PriceList,
    PriceListError,
    ServiceProductPrice,
    UnknownPriceError,
)
from invoicing.prices.loader import (
    PriceListFormatError,
    load_price_book,
    parse_price_book,
    sample_price_book,
)
from invoicing.prices.vat import VatCategory


def _package(code: PackageCode = PackageCode.KEVYT, **overrides: object) -> PackagePrice:
    fields: dict[str, object] = {
        "package": code,
        "name": f"Procountor {code}",
        "monthly_fee": Decimal("39.00"),
        "included_vouchers": 10,
        "included_payees": 1,
        "extra_voucher_price": Decimal("1.79"),
        "extra_payee_price": Decimal("9.90"),
        "einvoice_send_price": Decimal("0.35"),
        "einvoice_receive_price": Decimal("0.25"),
        "minimum_invoice_applies": True,
    }
    fields.update(overrides)
    return PackagePrice(**fields)  # type: ignore[arg-type]


def _list(list_id: str, valid_from: dt.date, valid_to: dt.date | None) -> PriceList:
    return PriceList(id=list_id, valid_from=valid_from, valid_to=valid_to, packages=(_package(),))


def test_prices_are_keyed_by_the_package_codes_of_the_wire_contract() -> None:
    assert PackageCode is ContractPackageCode


def test_b07_the_price_list_in_force_is_chosen_by_the_billed_month() -> None:
    book = PriceBook(
        (
            _list("2024", dt.date(2024, 1, 1), dt.date(2025, 12, 31)),
            _list("2026", dt.date(2026, 1, 1), None),
        )
    )
    assert book.price_list_for(YearMonth(2025, 12)).id == "2024"
    assert book.price_list_for(YearMonth(2026, 1)).id == "2026"
    assert book.price_list_for(YearMonth(2030, 6)).id == "2026"
    with pytest.raises(UnknownPriceError, match="2023-12"):
        book.price_list_for(YearMonth(2023, 12))


@pytest.mark.parametrize(
    ("first_to", "second_from"),
    [
        (None, dt.date(2026, 1, 1)),  # open-ended list followed by another
        (dt.date(2026, 1, 31), dt.date(2026, 1, 1)),  # one month in both
    ],
)
def test_b07_overlapping_price_lists_are_refused(first_to: dt.date | None, second_from: dt.date) -> None:
    with pytest.raises(PriceListError, match="overlap"):
        PriceBook(
            (
                _list("a", dt.date(2024, 1, 1), first_to),
                _list("b", second_from, None),
            )
        )


def test_b07_price_lists_are_valid_for_whole_months() -> None:
    with pytest.raises(PriceListError, match="first of a month"):
        _list("a", dt.date(2024, 1, 2), None)
    with pytest.raises(PriceListError, match="last day of a month"):
        _list("a", dt.date(2024, 1, 1), dt.date(2024, 6, 15))


def test_b07_prices_are_decimals_never_floats() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        _package(monthly_fee=39.0)
    with pytest.raises(PriceListError, match="negative"):
        _package(extra_voucher_price=Decimal("-1.79"))
    with pytest.raises(PriceListError, match="non-negative integer"):
        _package(included_vouchers=-1)


def test_b07_a_package_or_service_product_is_priced_once_per_list() -> None:
    with pytest.raises(PriceListError, match="priced twice"):
        PriceList(id="a", valid_from=dt.date(2024, 1, 1), valid_to=None, packages=(_package(), _package()))
    product = ServiceProductPrice(code="H", name="Hours", hourly_rate=Decimal("75.00"))
    with pytest.raises(PriceListError, match="priced twice"):
        PriceList(
            id="a",
            valid_from=dt.date(2024, 1, 1),
            valid_to=None,
            packages=(),
            service_products=(product, product),
        )


def test_b07_unknown_packages_and_products_are_lookup_errors() -> None:
    price_list = _list("a", dt.date(2024, 1, 1), None)
    assert price_list.package("kevyt").package is PackageCode.KEVYT
    with pytest.raises(UnknownPriceError, match="jousto"):
        price_list.package(PackageCode.JOUSTO)
    with pytest.raises(UnknownPriceError, match="X"):
        price_list.service_product("X")


def test_b05_payment_term_defaults_to_ten_days() -> None:
    assert _list("a", dt.date(2024, 1, 1), None).payment_term_days == 10


def test_b07_sample_price_book_is_marked_as_sample_and_prices_every_package() -> None:
    book = sample_price_book()
    assert book.is_sample
    price_list = book.price_list_for(YearMonth(2024, 1))
    assert price_list.valid_from == dt.date(2024, 1, 1)
    assert price_list.payment_term_days == 10
    assert {p.package for p in price_list.packages} == set(PackageCode)
    kevyt = price_list.package(PackageCode.KEVYT)
    assert (kevyt.included_vouchers, kevyt.included_payees) == (10, 1)
    assert kevyt.monthly_fee == Decimal("39.00")
    assert kevyt.extra_voucher_price == Decimal("1.79")
    assert kevyt.extra_payee_price == Decimal("9.90")
    assert price_list.package(PackageCode.ALKU).included_payees == 0
    assert price_list.package(PackageCode.JOUSTO).minimum_monthly_charge is not None
    assert price_list.package(PackageCode.TALLENNUS).user_price is not None
    assert price_list.service_products
    assert all(p.vat_category is VatCategory.GENERAL for p in price_list.packages)


def test_b15_sample_minimum_invoice_applies_to_all_but_tallennus() -> None:
    price_list = sample_price_book().price_list_for(YearMonth(2026, 1))
    exempt = {p.package for p in price_list.packages if not p.minimum_invoice_applies}
    assert exempt == {PackageCode.TALLENNUS}


def test_the_sample_file_says_it_holds_sample_values() -> None:
    path = Path(__file__).parents[2] / "src/invoicing/price_lists/sample.yaml"
    assert "SAMPLE" in path.read_text(encoding="utf-8").splitlines()[0]
    assert load_price_book(path) == sample_price_book()


_MINIMAL = """
price_lists:
  - id: p1
    valid_from: 2024-01-01
    packages:
      kevyt:
        name: Kevyt
        monthly_fee: {fee}
        included_vouchers: 10
        included_payees: 1
        extra_voucher_price: "1.79"
        extra_payee_price: "9.90"
        einvoice_send_price: "0.35"
        einvoice_receive_price: "0.25"
        minimum_invoice_applies: true
"""


def test_b07_loader_reads_money_from_strings_as_exact_decimals() -> None:
    book = parse_price_book(_MINIMAL.format(fee='"39.00"'))
    assert not book.is_sample
    package = book.price_list_for(YearMonth(2024, 5)).package(PackageCode.KEVYT)
    assert package.monthly_fee == Decimal("39.00")
    assert str(package.extra_voucher_price) == "1.79"
    assert book.price_lists[0].valid_to is None


def test_b07_loader_refuses_floats_in_money_fields_with_a_clear_error() -> None:
    with pytest.raises(PriceListFormatError, match=r"monthly_fee: money must be a quoted string"):
        parse_price_book(_MINIMAL.format(fee="39.00"))


@pytest.mark.parametrize(
    ("fee", "message"),
    [
        ('"abc"', "not a decimal"),
        ('"NaN"', "not a finite"),
        ("true", "quoted decimal string"),
        ('"-1.00"', "negative"),
    ],
)
def test_b07_loader_refuses_malformed_money(fee: str, message: str) -> None:
    with pytest.raises(PriceListError, match=message):
        parse_price_book(_MINIMAL.format(fee=fee))


def test_b07_loader_accepts_whole_euros_as_integers() -> None:
    book = parse_price_book(_MINIMAL.format(fee="39"))
    assert book.price_lists[0].package(PackageCode.KEVYT).monthly_fee == Decimal(39)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("[]", "expected a mapping"),
        ("price_lists: []", "non-empty list"),
        ("price_lists: [{id: x}]", "price list x: missing"),
        (_MINIMAL.format(fee='"1"').replace("kevyt:", "premium:"), "unknown package code"),
        (_MINIMAL.format(fee='"1"').replace("name: Kevyt", "name: Kevyt\n        colour: red"), "colour"),
        (_MINIMAL.format(fee='"1"').replace("included_vouchers: 10", "included_vouchers: ten"), "integer"),
        (_MINIMAL.format(fee='"1"').replace("2024-01-01", "January"), "YYYY-MM-DD"),
        ("price_lists: [", "not valid YAML"),
    ],
)
def test_b07_loader_says_what_is_wrong_and_where(yaml_text: str, message: str) -> None:
    with pytest.raises(PriceListError, match=message):
        parse_price_book(yaml_text)
