"""`InvoiceIssuedV1` as wire JSON, built directly: byte for byte what the contract's serializer writes.

A run publishes one invoice per payer (100,000 at country scale); building and validating a
pydantic model for each costs more than the rest of the run's Python together. The values come
from the domain's checked types and from contracts validated when they came in, so this writes the
JSON directly. `tests/unit/test_invoice_wire.py` holds it to the contract: for generated invoices
it must equal `wire_json(InvoiceIssuedV1.model_validate(...))`, and the run still validates the
first invoice of every batch against the contract (`check_against_contract`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from billing_contracts.invoicing import InvoiceIssuedV1

_CENT = Decimal("0.01")
#: A JSON string literal, non-ASCII kept as is (`ensure_ascii=False`), in C.
_dumps = json.encoder.encode_basestring


def _money(value: Decimal) -> str:
    return '"' + format(value.quantize(_CENT), "f") + '"'


def _decimal(value: Decimal) -> str:
    return '"' + format(value, "f") + '"'


def _instant(value: dt.datetime) -> str:
    text = value.isoformat()
    if value.utcoffset() == dt.timedelta(0):
        text = text.removesuffix("+00:00") + "Z"
    return '"' + text + '"'


def _text(value: str | None) -> str:
    return "null" if value is None else _dumps(value)


def _address(value: Mapping[str, Any]) -> str:
    return (
        f'{{"street":{_dumps(value["street"])},"postal_code":{_dumps(value["postal_code"])},'
        f'"city":{_dumps(value["city"])},"country_code":{_dumps(value.get("country_code") or "FI")}}}'
    )


def _einvoice(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "null"
    return f'{{"address":{_dumps(value["address"])},"operator":{_dumps(value["operator"])}}}'


def _line(ln: Mapping[str, Any]) -> str:
    return (
        f'{{"line_no":{ln["line_no"]},"environment_id":{_dumps(ln["environment_id"])},'
        f'"product_code":{_dumps(ln["product_code"])},"description":{_dumps(ln["description"])},'
        f'"period_start":"{ln["period_start"].isoformat()}","period_end":"{ln["period_end"].isoformat()}",'
        f'"quantity":{_decimal(ln["quantity"])},"unit":{_dumps(ln["unit"])},'
        f'"unit_price":{_decimal(ln["unit_price"])},"net":{_money(ln["net"])},"vat_rate":{_decimal(ln["vat_rate"])},'
        f'"is_correction":{"true" if ln["is_correction"] else "false"},"charge_kind":{_text(ln["charge_kind"])},'
        f'"carried_from_period":{_text(ln["carried_from_period"])}}}'
    )


def _vat(v: Mapping[str, Any]) -> str:
    return f'{{"vat_rate":{_decimal(v["vat_rate"])},"net":{_money(v["net"])},"vat":{_money(v["vat"])}}}'


def invoice_json(f: Mapping[str, Any]) -> bytes:
    """The wire JSON of an `InvoiceIssuedV1` from its fields (as `model_validate` would take them)."""
    lines: Sequence[Mapping[str, Any]] = f["lines"]
    resellers: Mapping[str, Decimal] = f["software_net_by_reseller"]
    parts = [
        f'{{"event_id":"{f["event_id"]}","occurred_at":{_instant(f["occurred_at"])},"producer":{_dumps(f["producer"])},',
        f'"invoice_id":{_dumps(f["invoice_id"])},"invoice_number":{_dumps(f["invoice_number"])},',
        f'"reference_number":{_dumps(f["reference_number"])},"payer_id":{_dumps(f["payer_id"])},',
        f'"payer_kind":{_dumps(f["payer_kind"])},"payer_business_id":{_dumps(f["payer_business_id"])},',
        f'"payer_name":{_dumps(f["payer_name"])},"billing_address":{_address(f["billing_address"])},',
        f'"billing_channel":{_dumps(f["billing_channel"])},"einvoice_address":{_einvoice(f["einvoice_address"])},',
        f'"billing_email":{_text(f["billing_email"])},"billing_period":{_dumps(f["billing_period"])},',
        f'"invoice_date":"{f["invoice_date"].isoformat()}","due_date":"{f["due_date"].isoformat()}",',
        f'"currency":{_dumps(f.get("currency", "EUR"))},',
        '"lines":[' + ",".join(_line(ln) for ln in lines) + "],",
        '"vat_totals":[' + ",".join(_vat(v) for v in f["vat_totals"]) + "],",
        f'"total_net":{_money(f["total_net"])},"total_vat":{_money(f["total_vat"])},',
        f'"total_gross":{_money(f["total_gross"])},',
        '"software_net_by_reseller":{'
        + ",".join(f"{_dumps(k)}:{_money(v)}" for k, v in resellers.items())
        + "},",
        f'"final_invoice":{"true" if f["final_invoice"] else "false"},"carried_net":{_money(f["carried_net"])}}}',
    ]
    return "".join(parts).encode()


def check_against_contract(document: bytes) -> InvoiceIssuedV1:
    """Validate wire JSON against the contract (raises `pydantic.ValidationError` with the reason)."""
    return InvoiceIssuedV1.model_validate_json(document)
