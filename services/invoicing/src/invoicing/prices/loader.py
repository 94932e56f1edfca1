"""Price books from YAML: money from strings as Decimal, floats refused (B-07)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from billing_contracts.base import EARLIEST_DATE, INT32_MAX, LATEST_DATE
from invoicing.prices.domain import (
    DEFAULT_PAYMENT_TERM_DAYS,
    PackageCode,
    PackagePrice,
    PriceBook,
    PriceList,
    PriceListError,
    ServiceProductPrice,
)
from invoicing.prices.vat import VatCategory, VatRateTable, parse_vat_rates

_BOOK_KEYS = {"sample", "price_lists"}
_LIST_KEYS = {"id", "valid_from", "valid_to", "payment_term_days", "packages", "service_products"}
_PACKAGE_MONEY = (
    "monthly_fee",
    "extra_voucher_price",
    "extra_payee_price",
    "einvoice_send_price",
    "einvoice_receive_price",
)
_PACKAGE_OPTIONAL_MONEY = ("minimum_monthly_charge", "user_price", "signature_price")
_PACKAGE_COUNTS = ("included_vouchers", "included_payees")
_PACKAGE_KEYS = {
    "name",
    "minimum_invoice_applies",
    "included_users",
    "vat_category",
    *_PACKAGE_MONEY,
    *_PACKAGE_OPTIONAL_MONEY,
    *_PACKAGE_COUNTS,
}
_PRODUCT_KEYS = {"code", "name", "hourly_rate", "vat_category"}


class PriceListFormatError(PriceListError):
    """The YAML does not describe a valid price book; the message says where."""


#: A price book is a few kilobytes and a few levels deep; anything far beyond is not one.
MAX_YAML_CHARS = 256 * 1024
MAX_YAML_DEPTH = 16
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _bounded_yaml(text: str) -> object:
    """`yaml.safe_load`, after checking size, nesting and aliases without recursion (PyYAML's
    composer recurses per level: 5,000 levels exhaust the stack)."""
    if len(text) > MAX_YAML_CHARS:
        raise PriceListFormatError(f"the price book is larger than {MAX_YAML_CHARS:,} characters")
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise PriceListFormatError("YAML aliases are not accepted in a price book")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise PriceListFormatError(
                        f"the price book is nested deeper than {MAX_YAML_DEPTH} levels"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent) and _CONTROL.search(event.value):
                line = f"line {event.start_mark.line + 1}: " if event.start_mark is not None else ""
                raise PriceListFormatError(f"{line}control characters are not accepted in a price book")
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PriceListFormatError(f"not valid YAML: {_visible(str(error))}") from None


def _visible(text: str) -> str:
    return _CONTROL.sub("?", text)[:500]


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise PriceListFormatError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _keys(data: Mapping[str, object], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise PriceListFormatError(f"{where}: unknown keys {sorted(unknown)}")


def _required(data: Mapping[str, object], key: str, where: str) -> object:
    if key not in data:
        raise PriceListFormatError(f"{where}: missing {key}")
    return data[key]


def _money(value: object, where: str) -> Decimal:
    # YAML reads 1.79 as a binary float; by then exactness is already lost.
    if isinstance(value, float):
        raise PriceListFormatError(
            f'{where}: money must be a quoted string such as "{value:.2f}", not the float {value!r}'
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PriceListFormatError(f"{where}: money must be a quoted decimal string, got {value!r}")
    try:
        amount = Decimal(value) if isinstance(value, int) else Decimal(value.strip())
    except InvalidOperation:
        raise PriceListFormatError(f"{where}: not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise PriceListFormatError(f"{where}: not a finite amount: {value!r}")
    return amount


def _int(value: object, where: str, *, most: int = INT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PriceListFormatError(f"{where}: expected an integer, got {value!r}")
    if not 0 <= value <= most:
        raise PriceListFormatError(f"{where}: expected an integer from 0 to {most:,}, got {value}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise PriceListFormatError(f"{where}: expected true or false, got {value!r}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PriceListFormatError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise PriceListFormatError(f"{where}: expected a date, got a timestamp {value!r}")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = dt.date.fromisoformat(value)
    if isinstance(value, dt.date):
        if not EARLIEST_DATE <= value <= LATEST_DATE:
            raise PriceListFormatError(f"{where}: {value} is outside {EARLIEST_DATE} … {LATEST_DATE}")
        return value
    raise PriceListFormatError(f"{where}: expected a YYYY-MM-DD date, got {value!r}")


def _vat_category(data: Mapping[str, object], where: str) -> VatCategory:
    value = data.get("vat_category", VatCategory.GENERAL.value)
    try:
        return VatCategory(_str(value, f"{where}.vat_category"))
    except ValueError:
        raise PriceListFormatError(f"{where}.vat_category: unknown category {value!r}") from None


def _package(code: object, raw: object, where: str) -> PackagePrice:
    try:
        package = PackageCode(_str(code, where))
    except ValueError:
        raise PriceListFormatError(f"{where}: unknown package code {code!r}") from None
    where = f"{where}.{package}"
    data = _mapping(raw, where)
    _keys(data, _PACKAGE_KEYS, where)
    money = {k: _money(_required(data, k, where), f"{where}.{k}") for k in _PACKAGE_MONEY}
    optional = {
        k: None if data.get(k) is None else _money(data[k], f"{where}.{k}") for k in _PACKAGE_OPTIONAL_MONEY
    }
    counts = {k: _int(_required(data, k, where), f"{where}.{k}") for k in _PACKAGE_COUNTS}
    return PackagePrice(
        package=package,
        name=_str(_required(data, "name", where), f"{where}.name"),
        minimum_invoice_applies=_bool(
            _required(data, "minimum_invoice_applies", where), f"{where}.minimum_invoice_applies"
        ),
        included_users=_int(data.get("included_users", 0), f"{where}.included_users"),
        vat_category=_vat_category(data, where),
        monthly_fee=money["monthly_fee"],
        extra_voucher_price=money["extra_voucher_price"],
        extra_payee_price=money["extra_payee_price"],
        einvoice_send_price=money["einvoice_send_price"],
        einvoice_receive_price=money["einvoice_receive_price"],
        minimum_monthly_charge=optional["minimum_monthly_charge"],
        user_price=optional["user_price"],
        signature_price=optional["signature_price"],
        included_vouchers=counts["included_vouchers"],
        included_payees=counts["included_payees"],
    )


def _service_product(raw: object, where: str) -> ServiceProductPrice:
    data = _mapping(raw, where)
    _keys(data, _PRODUCT_KEYS, where)
    return ServiceProductPrice(
        code=_str(_required(data, "code", where), f"{where}.code"),
        name=_str(_required(data, "name", where), f"{where}.name"),
        hourly_rate=_money(_required(data, "hourly_rate", where), f"{where}.hourly_rate"),
        vat_category=_vat_category(data, where),
    )


def _price_list(raw: object, where: str) -> PriceList:
    data = _mapping(raw, where)
    _keys(data, _LIST_KEYS, where)
    list_id = _str(_required(data, "id", where), f"{where}.id")
    where = f"price list {list_id}"
    packages = _mapping(_required(data, "packages", where), f"{where}.packages")
    products = data.get("service_products") or []
    if not isinstance(products, list):
        raise PriceListFormatError(f"{where}.service_products: expected a list")
    valid_to = data.get("valid_to")
    return PriceList(
        id=list_id,
        valid_from=_date(_required(data, "valid_from", where), f"{where}.valid_from"),
        valid_to=None if valid_to is None else _date(valid_to, f"{where}.valid_to"),
        payment_term_days=_int(
            data.get("payment_term_days", DEFAULT_PAYMENT_TERM_DAYS), f"{where}.payment_term_days", most=365
        ),
        packages=tuple(_package(code, p, f"{where}.packages") for code, p in packages.items()),
        service_products=tuple(
            _service_product(p, f"{where}.service_products[{i}]") for i, p in enumerate(products)
        ),
    )


def parse_price_book(text: str) -> PriceBook:
    """A price book from YAML text; raises `PriceListError` saying what and where."""
    document = _bounded_yaml(text)
    data = _mapping(document, "price book")
    _keys(data, _BOOK_KEYS, "price book")
    lists = _required(data, "price_lists", "price book")
    if not isinstance(lists, list) or not lists:
        raise PriceListFormatError("price book: price_lists must be a non-empty list")
    return PriceBook(
        price_lists=tuple(_price_list(p, f"price_lists[{i}]") for i, p in enumerate(lists)),
        is_sample=_bool(data.get("sample", False), "price book.sample"),
    )


def load_price_book(path: Path) -> PriceBook:
    """A price book from a YAML file (read once at start-up by the composition root)."""
    return parse_price_book(path.read_text(encoding="utf-8"))


def sample_price_book() -> PriceBook:
    """The bundled SAMPLE price book (made-up prices) for development and tests."""
    text = resources.files("invoicing").joinpath("price_lists/sample.yaml").read_text("utf-8")
    return parse_price_book(text)


def load_vat_rates(path: Path) -> VatRateTable:
    """VAT rates from a YAML file (`INVOICING_VAT_RATES_FILE`, read once at start-up)."""
    return parse_vat_rates(path.read_text(encoding="utf-8"))


@functools.cache
def shipped_vat_rates() -> VatRateTable:
    """Today's Finnish VAT rates and their history, as shipped in `price_lists/vat_rates.yaml`."""
    return parse_vat_rates(
        resources.files("invoicing").joinpath("price_lists/vat_rates.yaml").read_text("utf-8")
    )


# --- price lists as stored: one-list documents (B-07) ---


@dataclass(frozen=True)
class StoredPriceList:
    """One price list as stored: its validity and the one-list price book YAML it is read from."""

    price_list_id: str
    valid_from: dt.date
    valid_to: dt.date | None
    is_sample: bool
    document: str
    source: str
    loaded_at: dt.datetime
    loaded_by: str | None = None
    """Who loaded it: the token subject over the API, `configuration` for the configured file."""

    def parse(self) -> PriceList:
        return parse_price_book(self.document).price_lists[0]


def one_list_documents(text: str) -> list[tuple[PriceList, str, bool]]:
    """Each price list of a price book YAML, with a one-list YAML of its own (validated first)."""
    book = parse_price_book(text)
    raw: Any = yaml.safe_load(text)
    documents = []
    for price_list, raw_list in zip(book.price_lists, raw["price_lists"], strict=True):
        one = {"sample": book.is_sample, "price_lists": [raw_list]}
        documents.append(
            (price_list, yaml.safe_dump(one, sort_keys=False, allow_unicode=True), book.is_sample)
        )
    return documents


def with_valid_to(document: str, valid_to: dt.date) -> str:
    raw: Any = yaml.safe_load(document)
    raw["price_lists"][0]["valid_to"] = valid_to
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def configured_price_book_text(path: Path | None) -> str:
    """The YAML of the configured price book: the file, or the bundled SAMPLE when none is set."""
    if path is not None:
        return path.read_text(encoding="utf-8")
    return resources.files("invoicing").joinpath("price_lists/sample.yaml").read_text("utf-8")
