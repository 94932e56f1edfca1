"""The one 7-3-1 check digit of Finnish national references (B-18)."""

from __future__ import annotations

import pytest

from billing_contracts.references import reference_check_digit


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
