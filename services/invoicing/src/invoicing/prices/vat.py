"""VAT rates as effective-dated data (B-07, B-18): the categories, the rate periods, the table that
answers the rate in force for a service month, and the parser of the shipped YAML. Pure: the YAML
text comes in, a validated table goes out (the file is read by `prices.loader`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

import yaml

from invoicing.calendar import YearMonth
from invoicing.money import ZERO, require_decimal


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


class VatRatesFormatError(ValueError):
    """The VAT rate data does not parse or does not fit the rules; the message says where and why."""


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


_KEYS = {"category", "valid_from", "rate", "source"}


def _period(raw: object, where: str) -> VatRatePeriod:
    if not isinstance(raw, Mapping):
        raise VatRatesFormatError(f"{where}: expected a mapping with category, valid_from and rate")
    unknown = set(raw) - _KEYS
    if unknown:
        raise VatRatesFormatError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    try:
        category = VatCategory(raw["category"])
    except (KeyError, ValueError) as exc:
        raise VatRatesFormatError(f"{where}.category: one of {[c.value for c in VatCategory]}") from exc
    valid_from = raw.get("valid_from")
    if isinstance(valid_from, str):
        try:
            valid_from = dt.date.fromisoformat(valid_from)
        except ValueError as exc:
            raise VatRatesFormatError(f"{where}.valid_from: an ISO date, got {valid_from!r}") from exc
    if type(valid_from) is not dt.date:
        raise VatRatesFormatError(f"{where}.valid_from: an ISO date, got {valid_from!r}")
    rate = raw.get("rate")
    # Rates are exact: a quoted decimal string, never a float (25.5 as YAML float is refused).
    if not isinstance(rate, str):
        raise VatRatesFormatError(f'{where}.rate: a quoted decimal string such as "25.5", got {rate!r}')
    try:
        percent = Decimal(rate)
    except InvalidOperation as exc:
        raise VatRatesFormatError(f"{where}.rate: not a decimal: {rate!r}") from exc
    try:
        return VatRatePeriod(category, valid_from, percent)
    except ValueError as exc:
        raise VatRatesFormatError(f"{where}: {exc}") from exc


def parse_vat_rates(text: str) -> VatRateTable:
    """The VAT rate table of a YAML document `{vat_rates: [{category, valid_from, rate, source?}]}`.

    Refused with the place and reason: unknown keys or categories, unquoted (float) or out-of-range
    rates, a start that is not the first of a month, two rates of one category from the same day,
    and a category without any rate (every category must be priceable).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VatRatesFormatError(f"not YAML: {exc}") from exc
    if not isinstance(data, Mapping) or set(data) != {"vat_rates"} or not isinstance(data["vat_rates"], list):
        raise VatRatesFormatError("expected one key, vat_rates, holding a list of rate periods")
    periods = tuple(_period(raw, f"vat_rates[{i}]") for i, raw in enumerate(data["vat_rates"]))
    missing = set(VatCategory) - {p.category for p in periods}
    if missing:
        raise VatRatesFormatError(f"no rate for the categories {sorted(c.value for c in missing)}")
    try:
        return VatRateTable(periods)
    except ValueError as exc:
        raise VatRatesFormatError(str(exc)) from exc
