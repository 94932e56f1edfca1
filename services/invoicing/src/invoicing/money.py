"""Exact euro amounts and commercial rounding (B-18); the VAT rates are data: `prices.vat`."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def require_decimal(value: object, what: str) -> Decimal:
    """`value` if it is a finite Decimal; floats and other types are refused (money is exact)."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def cents(amount: Decimal) -> Decimal:
    """`amount` rounded to whole cents, half up (commercial rounding, B-18)."""
    return require_decimal(amount, "amount").quantize(CENT, rounding=ROUND_HALF_UP)


def vat_amount(net_sum: Decimal, rate_percent: Decimal) -> Decimal:
    """VAT on the sum of one rate's rounded line nets, rounded half up to cents (B-18).

    Computed once per rate on the sum rather than per line, so 7 × 1.79 € at
    25.5 % gives 12.53 × 0.255 = 3.19515 → 3.20, not 7 × 0.46 = 3.22.
    """
    net = require_decimal(net_sum, "net_sum")
    rate = require_decimal(rate_percent, "rate_percent")
    return cents(net * rate / Decimal(100))
