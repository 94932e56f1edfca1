"""The Finnish national reference number's check digit (kotimainen viite, 7-3-1): the one
implementation, used by the contracts' `ReferenceNumber` type, invoicing and the Procountor emulator.

Finanssiala's "Kotimaisen viitteen rakenneohje": the base's digits are weighted 7, 3, 1, 7, 3, 1, …
from the right; the check digit takes the sum up to the next multiple of ten.
"""

from __future__ import annotations

_WEIGHTS = (7, 3, 1)


def reference_check_digit(base: str) -> int:
    """The check digit of a national reference base (digits only; weights 7, 3, 1 from the right)."""
    if not base.isascii() or not base.isdigit():
        raise ValueError(f"a reference base is digits only, got {base!r}")
    total = sum(int(digit) * _WEIGHTS[i % 3] for i, digit in enumerate(reversed(base)))
    return (10 - total % 10) % 10
