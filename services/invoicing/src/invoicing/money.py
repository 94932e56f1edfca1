"""Exact euro amounts, commercial rounding and effective-dated VAT rates (B-07, B-18)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from invoicing.calendar import YearMonth

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


class VatCategory(StrEnum):
    """Kind of supply, which decides the VAT rate (finnish-invoicing.md §5)."""

    GENERAL = "general"
    REDUCED = "reduced"
    LOWER_REDUCED = "lower_reduced"
    ZERO = "zero"


@dataclass(frozen=True, slots=True)
class VatRatePeriod:
    """One VAT rate of a category, in force from `valid_from` until the next period of that category."""

    category: VatCategory
    valid_from: dt.date
    rate_percent: Decimal

    def __post_init__(self) -> None:
        require_decimal(self.rate_percent, "rate_percent")
        if not ZERO <= self.rate_percent < Decimal(100):
            raise ValueError(f"VAT rate must be 0..100 %, got {self.rate_percent}")
        # Billing is per month (B-04); a rate changing mid-month would split a service period.
        if self.valid_from.day != 1:
            raise ValueError(f"VAT rates change on the first of a month, got {self.valid_from}")


class UnknownVatRateError(LookupError):
    """No VAT rate of the category is known for the month."""


@dataclass(frozen=True, slots=True)
class VatRateTable:
    """Effective-dated VAT rates; the rate is the one in force for the service period (B-18)."""

    periods: tuple[VatRatePeriod, ...]

    def __post_init__(self) -> None:
        seen = {(p.category, p.valid_from) for p in self.periods}
        if len(seen) != len(self.periods):
            raise ValueError("two VAT rates of one category start on the same day")

    def rate_for(self, service_month: YearMonth, category: VatCategory = VatCategory.GENERAL) -> Decimal:
        """The rate in force in `service_month`, not on the invoice date (B-18).

        August 2024 usage billed in the September run takes 24 %, not 25.5 %.
        """
        in_force = [
            p for p in self.periods if p.category is category and p.valid_from <= service_month.first_day
        ]
        if not in_force:
            raise UnknownVatRateError(f"no {category} VAT rate for {service_month}")
        return max(in_force, key=lambda p: p.valid_from).rate_percent


_D = Decimal

# Finnish rates by law (AVL; HE 141/2024, HE 93/2025). Law, not prices, so they
# live in code; a new rate is a new period here, never an edited old one.
FINNISH_VAT_RATES = VatRateTable(
    periods=(
        VatRatePeriod(VatCategory.GENERAL, dt.date(2013, 1, 1), _D("24")),
        VatRatePeriod(VatCategory.GENERAL, dt.date(2024, 9, 1), _D("25.5")),
        VatRatePeriod(VatCategory.REDUCED, dt.date(2013, 1, 1), _D("14")),
        VatRatePeriod(VatCategory.REDUCED, dt.date(2026, 1, 1), _D("13.5")),
        VatRatePeriod(VatCategory.LOWER_REDUCED, dt.date(2013, 1, 1), _D("10")),
        VatRatePeriod(VatCategory.ZERO, dt.date(2013, 1, 1), _D("0")),
    )
)
