"""Price lists as effective-dated data: packages, service products, payment term (B-05, B-07)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from decimal import Decimal

from billing_contracts.contracts import PackageCode as PackageCode  # the wire vocabulary, re-exported
from invoicing.calendar import YearMonth
from invoicing.money import ZERO, require_decimal
from invoicing.prices.vat import VatCategory

DEFAULT_PAYMENT_TERM_DAYS = 10  # B-05


class PriceListError(ValueError):
    """A price list or price book is inconsistent."""


class UnknownPriceError(LookupError):
    """A package, service product or month has no price."""


def _price(value: object, what: str) -> Decimal:
    price = require_decimal(value, what)
    if price < ZERO:
        raise PriceListError(f"{what} may not be negative, got {price}")
    return price


def _count(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PriceListError(f"{what} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PackagePrice:
    """Net prices of one package in one price list (B-07); VAT is added per the VAT category."""

    package: PackageCode
    name: str
    monthly_fee: Decimal
    included_vouchers: int  # B-08
    included_payees: int  # B-12 (Alku: 0)
    extra_voucher_price: Decimal  # B-08
    extra_payee_price: Decimal  # B-12
    einvoice_send_price: Decimal  # B-13, per message
    einvoice_receive_price: Decimal  # B-13, per message
    minimum_invoice_applies: bool  # B-15: Taloushallinto, Solo, Allekirjoitus yes; Tallennus no
    minimum_monthly_charge: Decimal | None = None  # B-14 (Jousto)
    user_price: Decimal | None = None  # B-16 (Tallennus), per billable user
    included_users: int = 0  # B-16
    signature_price: Decimal | None = None  # Allekirjoitus, per signer
    vat_category: VatCategory = VatCategory.GENERAL

    def __post_init__(self) -> None:
        for what in (
            "monthly_fee",
            "extra_voucher_price",
            "extra_payee_price",
            "einvoice_send_price",
            "einvoice_receive_price",
        ):
            _price(getattr(self, what), f"{self.package}.{what}")
        for what in ("minimum_monthly_charge", "user_price", "signature_price"):
            if getattr(self, what) is not None:
                _price(getattr(self, what), f"{self.package}.{what}")
        for what in ("included_vouchers", "included_payees", "included_users"):
            _count(getattr(self, what), f"{self.package}.{what}")
        if not self.name:
            raise PriceListError(f"{self.package}: a package needs a name for invoice lines")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceProductPrice:
    """An hourly service product; billable hours are charged at its rate (I-07)."""

    code: str
    name: str
    hourly_rate: Decimal
    vat_category: VatCategory = VatCategory.GENERAL

    def __post_init__(self) -> None:
        if not self.code or not self.name:
            raise PriceListError("a service product needs a code and a name")
        _price(self.hourly_rate, f"{self.code}.hourly_rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceList:
    """Prices in force for whole months from `valid_from` to `valid_to` inclusive (B-07).

    Validity is month-aligned because a month is billed with one set of prices
    (B-04, B-26: no proration).
    """

    id: str
    valid_from: dt.date
    valid_to: dt.date | None
    packages: tuple[PackagePrice, ...]
    service_products: tuple[ServiceProductPrice, ...] = ()
    payment_term_days: int = DEFAULT_PAYMENT_TERM_DAYS  # B-05

    def __post_init__(self) -> None:
        if not self.id:
            raise PriceListError("a price list needs an id")
        if self.valid_from.day != 1:
            raise PriceListError(f"{self.id}: valid_from must be the first of a month")
        if self.valid_to is not None:
            if self.valid_to != YearMonth.of(self.valid_to).last_day:
                raise PriceListError(f"{self.id}: valid_to must be the last day of a month")
            if self.valid_to < self.valid_from:
                raise PriceListError(f"{self.id}: valid_to is before valid_from")
        _count(self.payment_term_days, f"{self.id}.payment_term_days")
        codes = [p.package for p in self.packages]
        if len(set(codes)) != len(codes):
            raise PriceListError(f"{self.id}: a package is priced twice")
        products = [s.code for s in self.service_products]
        if len(set(products)) != len(products):
            raise PriceListError(f"{self.id}: a service product is priced twice")

    @property
    def first_month(self) -> YearMonth:
        return YearMonth.of(self.valid_from)

    @property
    def last_month(self) -> YearMonth | None:
        return None if self.valid_to is None else YearMonth.of(self.valid_to)

    def covers(self, month: YearMonth) -> bool:
        last = self.last_month
        return self.first_month <= month and (last is None or month <= last)

    def package(self, code: PackageCode | str) -> PackagePrice:
        for price in self.packages:
            if price.package == code:
                return price
        raise UnknownPriceError(f"price list {self.id} has no package {code!r}")

    def service_product(self, code: str) -> ServiceProductPrice:
        for product in self.service_products:
            if product.code == code:
                return product
        raise UnknownPriceError(f"price list {self.id} has no service product {code!r}")


@dataclass(frozen=True, slots=True)
class PriceBook:
    """All price lists over time; at most one is in force in any month (B-07).

    `is_sample` marks made-up seed prices so that a production composition root
    can refuse them.
    """

    price_lists: tuple[PriceList, ...]
    is_sample: bool = False

    def __post_init__(self) -> None:
        ids = [p.id for p in self.price_lists]
        if len(set(ids)) != len(ids):
            raise PriceListError("two price lists share an id")
        ordered = sorted(self.price_lists, key=lambda p: p.valid_from)
        for earlier, later in itertools.pairwise(ordered):
            if earlier.valid_to is None or earlier.valid_to >= later.valid_from:
                raise PriceListError(f"price lists {earlier.id} and {later.id} overlap")

    def price_list_for(self, month: YearMonth) -> PriceList:
        """The price list in force for the billed month (the service period, B-04)."""
        for price_list in self.price_lists:
            if price_list.covers(month):
                return price_list
        raise UnknownPriceError(f"no price list in force for {month}")
