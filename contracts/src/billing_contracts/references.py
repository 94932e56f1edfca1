"""Finnish check digits, one implementation each, used by the contracts' types, invoicing, the
Procountor emulator, the dev stack, the benchmarks and the tests' builders.

- The national reference number (kotimainen viite, 7-3-1), Finanssiala's "Kotimaisen viitteen
  rakenneohje": the base's digits are weighted 7, 3, 1, 7, 3, 1, … from the right; the check digit
  takes the sum up to the next multiple of ten.
- The business ID (Y-tunnus, NNNNNNN-C): the seven digits weighted 7, 9, 10, 5, 8, 4, 2; remainder 0
  gives 0, remainder 1 is never issued (no base with it is a business ID), otherwise 11 − remainder.
"""

from __future__ import annotations

_REFERENCE_WEIGHTS = (7, 3, 1)
_BUSINESS_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2)


def reference_check_digit(base: str) -> int:
    """The check digit of a national reference base (digits only; weights 7, 3, 1 from the right)."""
    if not base.isascii() or not base.isdigit():
        raise ValueError(f"a reference base is digits only, got {base!r}")
    total = sum(int(digit) * _REFERENCE_WEIGHTS[i % 3] for i, digit in enumerate(reversed(base)))
    return (10 - total % 10) % 10


def with_reference_check_digit(base: int | str) -> str:
    """A whole national reference number: the base followed by its 7-3-1 check digit."""
    text = str(base)
    return f"{text}{reference_check_digit(text)}"


def business_id_check_digit(base: str) -> int | None:
    """The Y-tunnus check digit of a 7-digit base, or None where no business ID has that base."""
    if len(base) != 7 or not base.isascii() or not base.isdigit():
        raise ValueError(f"a business ID base is 7 digits, got {base!r}")
    remainder = sum(int(d) * w for d, w in zip(base, _BUSINESS_ID_WEIGHTS, strict=True)) % 11
    if remainder == 1:
        return None
    return 0 if remainder == 0 else 11 - remainder


def is_valid_business_id_check_digit(business_id: str) -> bool:
    """Whether a business ID shaped NNNNNNN-C carries its base's check digit."""
    base, _, check = business_id.partition("-")
    if len(base) != 7 or not base.isascii() or not base.isdigit() or len(check) != 1 or not check.isdigit():
        return False
    return business_id_check_digit(base) == int(check)


def first_business_id_from(base: int) -> str:
    """The first valid business ID whose base is `base` or after it (modulo 10,000,000): for test
    data, rehearsals and benchmarks that need many distinct valid IDs (at most every eleventh base
    has none)."""
    for candidate in range(base, base + 11):
        digits = f"{candidate % 10_000_000:07d}"
        check = business_id_check_digit(digits)
        if check is not None:
            return f"{digits}-{check}"
    raise AssertionError("unreachable: of eleven consecutive bases at most one has no check digit")
