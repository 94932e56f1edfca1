"""Reference numbers and business IDs on invoices (B-18)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import iso11649

from invoicing.references import (
    format_reference,
    format_rf_reference,
    is_valid_business_id,
    is_valid_reference,
    is_valid_rf_reference,
    make_reference,
    make_rf_reference,
    reference_check_digit,
    reference_for_invoice_number,
)

bases = st.integers(min_value=100, max_value=10**19 - 1)


@pytest.mark.parametrize(
    ("base", "reference", "printed"),
    [
        ("1234567", "12345672", "123 45672"),
        ("123456", "1234561", "12 34561"),
        ("123", "1232", "1232"),
        ("1000", "10003", "10003"),
    ],
)
def test_b18_national_reference_matches_the_worked_examples(base: str, reference: str, printed: str) -> None:
    assert reference_check_digit(base) == int(reference[-1])
    assert make_reference(base) == reference
    assert make_reference(int(base)) == reference
    assert is_valid_reference(reference)
    assert format_reference(reference) == printed


def test_b18_a_reference_with_a_wrong_check_digit_is_invalid() -> None:
    assert not is_valid_reference("12345673")


@pytest.mark.parametrize("ref", ["", "123", "0001232x", "12a45672", "1" * 21, "0002", "-1232"])
def test_b18_malformed_references_are_invalid(ref: str) -> None:
    assert not is_valid_reference(ref)


def test_b18_printed_and_zero_padded_references_validate() -> None:
    assert is_valid_reference("123 45672")
    assert is_valid_reference("00000000000012345672")
    assert format_reference("00000000000012345672") == "123 45672"


@pytest.mark.parametrize("base", ["12", "1" * 20, "0123", "12a", "", 5])
def test_b18_reference_bases_outside_3_to_19_digits_are_refused(base: str | int) -> None:
    with pytest.raises(ValueError, match="reference base"):
        make_reference(base)


def test_b18_formatting_an_invalid_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        format_reference("12345673")


@given(bases)
def test_b18_every_made_reference_validates(base: int) -> None:
    reference = make_reference(base)
    assert is_valid_reference(reference)
    assert reference[:-1] == str(base)
    assert 4 <= len(reference) <= 20
    assert format_reference(reference).replace(" ", "") == reference
    assert all(len(group) <= 5 for group in format_reference(reference).split())


@given(bases, st.integers(min_value=1, max_value=9))
def test_b18_changing_the_check_digit_makes_a_reference_invalid(base: int, shift: int) -> None:
    reference = make_reference(base)
    wrong = reference[:-1] + str((int(reference[-1]) + shift) % 10)
    assert not is_valid_reference(wrong)


@given(bases, st.data())
def test_b18_any_single_digit_error_in_the_base_is_detected(base: int, data: st.DataObject) -> None:
    # Weights 7, 3 and 1 are all coprime to 10, so one changed digit always shows.
    reference = make_reference(base)
    position = data.draw(st.integers(min_value=1, max_value=len(reference) - 2))
    digit = int(reference[position])
    new_digit = (digit + data.draw(st.integers(min_value=1, max_value=9))) % 10
    wrong = reference[:position] + str(new_digit) + reference[position + 1 :]
    assert not is_valid_reference(wrong)


def test_b18_invoice_reference_is_the_invoice_number_with_its_check_digit() -> None:
    assert reference_for_invoice_number(1234567) == "12345672"
    assert reference_for_invoice_number(100) == make_reference("100")


def test_b18_invoice_numbers_below_100_cannot_be_reference_bases() -> None:
    with pytest.raises(ValueError, match="start at 100"):
        reference_for_invoice_number(99)


@given(st.integers(min_value=100, max_value=10**19 - 1))
def test_b18_invoice_references_always_validate_and_name_their_invoice(number: int) -> None:
    reference = reference_for_invoice_number(number)
    assert is_valid_reference(reference)
    assert int(reference[:-1]) == number


def test_b18_rf_reference_matches_the_worked_examples() -> None:
    assert make_rf_reference("12345672") == "RF8512345672"
    assert format_rf_reference("RF8512345672") == "RF85 1234 5672"
    assert make_rf_reference("1232") == "RF111232"
    assert make_rf_reference("123 45672") == "RF8512345672"
    assert is_valid_rf_reference("RF85 1234 5672")
    assert is_valid_rf_reference("RF18 5390 0754 7034")
    assert not is_valid_rf_reference("RF17 5390 0754 7034")
    assert is_valid_rf_reference("RF41 13")


@pytest.mark.parametrize("ref", ["", "RF", "RF85", "XX8512345672", "RF8A12345672", "RF85" + "1" * 22])
def test_b18_malformed_rf_references_are_invalid(ref: str) -> None:
    assert not is_valid_rf_reference(ref)


def test_b18_rf_reference_of_an_invalid_national_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        make_rf_reference("12345673")


@given(bases)
def test_b18_rf_references_validate_here_and_in_stdnum(base: int) -> None:
    rf = make_rf_reference(make_reference(base))
    assert is_valid_rf_reference(rf)
    assert iso11649.is_valid(rf)
    assert rf[4:] == make_reference(base)


@pytest.mark.parametrize("business_id", ["2077474-0", "1234567-1", "7654321-2", "1572860-0"])
def test_valid_business_ids_are_accepted(business_id: str) -> None:
    assert is_valid_business_id(business_id)


@pytest.mark.parametrize(
    "business_id", ["2077474-1", "20774740", "207747-0", "1000008-0", "1000008-1", "", "FI20774740"]
)
def test_invalid_or_unformatted_business_ids_are_refused(business_id: str) -> None:
    assert not is_valid_business_id(business_id)
