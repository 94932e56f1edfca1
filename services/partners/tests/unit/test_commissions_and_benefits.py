"""Commission statements (P-08), their CSV for finance, and the benefit book as effective-dated data (P-06, P-09)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest

from billing_contracts.partners import CommissionLineKind, PartnerTier
from partners.benefits import BenefitFileError, load_benefit_book, parse_benefit_book
from partners.domain import (
    Presentation,
    StatementLine,
    commission_amount,
    listed_in_directory,
    make_statement,
    statement_csv,
)

D = Decimal


def invoice(number: str, net: str, day: int = 2) -> StatementLine:
    return StatementLine(
        document_id=f"INV-{number}",
        kind=CommissionLineKind.INVOICE,
        number=number,
        date=dt.date(2026, 11, day),
        payer_business_id="2077474-0",
        software_net=D(net),
        billing_period="2026-10",
    )


def credit_note(number: str, net: str, credited: str) -> StatementLine:
    return StatementLine(
        document_id=f"CN-{number}",
        kind=CommissionLineKind.CREDIT_NOTE,
        number=number,
        date=dt.date(2026, 10, 20),
        payer_business_id="2077474-0",
        software_net=D(net),
        credited_invoice_number=credited,
    )


# --- P-08: ten percent of the net software charges, rounded once, half up ---------------------------


@pytest.mark.parametrize(
    ("total", "commission"),
    [
        ("0.00", "0.00"),
        ("39.00", "3.90"),
        ("0.05", "0.01"),  # 0.005 rounds half up
        ("0.04", "0.00"),
        ("19.95", "2.00"),  # 1.995 → 2.00
        ("-19.95", "-2.00"),  # a month of more credit than sales gives back as much, away from zero
        ("123456.78", "12345.68"),
    ],
)
def test_the_commission_is_ten_percent_of_the_total_rounded_half_up_to_cents(
    total: str, commission: str
) -> None:
    assert commission_amount(D(total), D(10)) == D(commission)


def test_rounding_happens_once_on_the_total_not_per_invoice() -> None:
    # Three invoices of 0.05: per invoice 0.005 → 0.01 each = 0.03; on the total 0.015 → 0.02.
    statement = make_statement(
        "firm-7",
        "2026-10",
        [invoice("1", "0.05"), invoice("2", "0.05"), invoice("3", "0.05")],
        rate_percent=D(10),
        issued_on=dt.date(2026, 11, 2),
    )
    assert (statement.software_net_total, statement.commission) == (D("0.15"), D("0.02"))


def test_a_credit_note_reduces_the_statement_as_its_own_line() -> None:
    statement = make_statement(
        "firm-7",
        "2026-10",
        [invoice("100231", "39.00"), invoice("100232", "44.37"), credit_note("100240", "-4.50", "100112")],
        rate_percent=D(10),
        issued_on=dt.date(2026, 11, 2),
    )
    assert statement.statement_id == "CS-2026-10-firm-7"
    assert statement.software_net_total == D("78.87")
    assert statement.commission == D("7.89")


# --- CSV for the finance team ------------------------------------------------------------------------


def test_the_csv_is_what_finnish_spreadsheets_open_semicolons_decimal_commas_bom() -> None:
    statement = make_statement(
        "firm-7",
        "2026-10",
        [invoice("100231", "39.00"), credit_note("100240", "-4.50", "100112")],
        rate_percent=D(10),
        issued_on=dt.date(2026, 11, 2),
    )
    text = statement_csv(statement)
    assert text.startswith("\ufeff")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=";"))
    assert rows[0][:3] == ["tilitoimisto", "kuukausi", "rivilaji"]
    assert rows[1][2:9] == ["lasku", "100231", "", "2026-10", "2.11.2026", "2077474-0", "39,00"]
    assert rows[2][2:9] == ["hyvityslasku", "100240", "100112", "", "20.10.2026", "2077474-0", "-4,50"]
    assert (rows[3][2], rows[3][8]) == ("yhteensä", "34,50")
    assert (rows[4][2], rows[4][8]) == ("palkkio", "3,45")
    assert "10 %" in rows[4][9]


# --- P-06 benefits as effective-dated data -------------------------------------------------------------


def test_the_shipped_book_is_the_seeds_table() -> None:
    book = load_benefit_book()
    on = book.on(dt.date(2026, 11, 1))
    assert [on.tiers[t].own_use_discount_percent for t in PartnerTier] == [D(0), D(25), D(50), D(100)]
    assert {on.tiers[t].resale_commission_percent for t in PartnerTier} == {D(10)}
    assert {on.tiers[t].opinahjo_discount_percent for t in PartnerTier} == {D(20)}
    assert [on.tiers[t].presentation for t in PartnerTier] == [
        Presentation.NONE,
        Presentation.NONE,
        Presentation.PRESENTATION,
        Presentation.EXTENDED,
    ]
    assert [on.tiers[t].marketing_program for t in PartnerTier] == [None, "silver", "gold", "platinum"]
    assert not on.tiers[PartnerTier.SILVER].free_training_webinars
    assert on.tiers[PartnerTier.GOLD].free_training_webinars


def test_the_directory_lists_silver_and_up_of_the_firms_in_the_program() -> None:
    rules = load_benefit_book().on(dt.date(2026, 11, 1))
    assert [listed_in_directory(True, t, rules) for t in PartnerTier] == [False, True, True, True]
    assert not listed_in_directory(False, PartnerTier.PLATINUM, rules)


SHIPPED = Path(__file__).resolve().parents[2] / "src" / "partners" / "data" / "benefits.yaml"


def test_a_later_set_takes_over_from_its_first_day() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    sets = text.split("benefit_sets:\n", 1)[1]
    later = sets.replace("valid_from: 2000-01-01", "valid_from: 2027-01-01").replace(
        'own_use_discount_percent: "25"', 'own_use_discount_percent: "30"'
    )
    book = parse_benefit_book("benefit_sets:\n" + sets + later)
    assert book.of(PartnerTier.SILVER, dt.date(2026, 12, 31)).own_use_discount_percent == D(25)
    assert book.of(PartnerTier.SILVER, dt.date(2027, 1, 1)).own_use_discount_percent == D(30)
    assert book.for_month("2027-01").valid_from == dt.date(2027, 1, 1)


def test_a_higher_tier_without_a_lower_tiers_benefit_is_refused() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    broken = text.replace('own_use_discount_percent: "100"', 'own_use_discount_percent: "40"')
    with pytest.raises(BenefitFileError, match="platinum must have all of gold's benefits"):
        parse_benefit_book(broken)


def test_percentages_must_be_quoted_so_no_float_reaches_the_money() -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace(
        'resale_commission_percent: "10"', "resale_commission_percent: 10.0", 1
    )
    with pytest.raises(BenefitFileError):
        parse_benefit_book(text)


def test_a_day_before_the_first_set_has_no_benefits() -> None:
    with pytest.raises(LookupError):
        load_benefit_book().on(dt.date(1999, 12, 31))


def test_a_statement_serialised_directly_is_the_contracts_own_json() -> None:
    import json

    from billing_contracts.partners import CommissionInvoice, CommissionStatementIssuedV1
    from partners.service import statement_message

    statement = make_statement(
        "firm-7",
        "2026-10",
        [invoice("100231", "39.00"), invoice("100232", "0.5"), credit_note("100240", "-4.50", "100112")],
        rate_percent=D(10),
        issued_on=dt.date(2026, 11, 2),
    )
    at = dt.datetime(2026, 11, 2, 7, tzinfo=dt.UTC)
    event_id, message = statement_message(statement, at, validate=True)
    published = json.loads(message.value)
    event = CommissionStatementIssuedV1.model_validate_json(message.value)
    assert event.event_id == event_id
    # The same statement built through the contract's models gives the same JSON.
    rebuilt = event.model_copy(
        update={
            "invoices": [CommissionInvoice.model_validate(i.model_dump()) for i in event.invoices],
        }
    )
    assert json.loads(rebuilt.model_dump_json()) == published
    assert [i["software_net"] for i in published["invoices"]] == ["39.00", "0.50", "-4.50"]
    assert published["invoices"][2]["kind"] == "credit_note"
    assert (published["software_net_total"], published["commission_amount"]) == ("35.00", "3.50")
