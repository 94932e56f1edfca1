"""The one 7-3-1 check digit of Finnish national references (B-18) and the one business ID check digit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.fi import ytunnus

from billing_contracts.references import (
    business_id_check_digit,
    first_business_id_from,
    is_valid_business_id_check_digit,
    reference_check_digit,
    with_reference_check_digit,
)


@pytest.mark.parametrize(
    ("base", "check"),
    [("123", 2), ("123456", 1), ("1234567", 2), ("100001", 2), ("1000", 3)],
)
def test_the_check_digit_weights_7_3_1_from_the_right(base: str, check: int) -> None:
    assert reference_check_digit(base) == check


@pytest.mark.parametrize("base", ["", "12a", "１２３"])
def test_a_base_is_ascii_digits_only(base: str) -> None:
    with pytest.raises(ValueError, match="digits only"):
        reference_check_digit(base)


def test_a_whole_reference_is_its_base_and_check_digit() -> None:
    assert with_reference_check_digit(123456) == "1234561"
    assert with_reference_check_digit("1000") == "10003"


@pytest.mark.parametrize(
    ("business_id", "valid"),
    [
        ("0737546-2", True),  # weights 7, 9, 10, 5, 8, 4, 2: remainder 9 → 11 − 9
        ("1572860-0", True),  # remainder 0 → 0
        ("0737546-3", False),
        ("0737546", False),
        ("073754-62", False),
        ("０７３７５４６-2", False),
    ],
)
def test_a_business_id_carries_its_check_digit(business_id: str, valid: bool) -> None:
    assert is_valid_business_id_check_digit(business_id) is valid


@given(st.integers(min_value=0, max_value=9_999_999))
def test_our_business_id_check_digit_agrees_with_python_stdnum(base: int) -> None:
    digits = f"{base:07d}"
    check = business_id_check_digit(digits)
    if check is None:  # remainder 1: no business ID has this base
        assert not any(ytunnus.is_valid(f"{digits}-{c}") for c in range(10))
    else:
        assert ytunnus.is_valid(f"{digits}-{check}")
        assert is_valid_business_id_check_digit(f"{digits}-{check}")


@given(st.integers(min_value=0, max_value=20_000_000))
def test_the_first_business_id_from_a_base_is_valid_and_not_before_it(base: int) -> None:
    made = first_business_id_from(base)
    assert ytunnus.is_valid(made)
    assert 0 <= (int(made[:7]) - base) % 10_000_000 <= 10
