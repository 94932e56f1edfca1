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
#: The C encoder of the standard library: compact, non-ASCII kept as is, like pydantic's.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _money(value: Decimal) -> str:
    return format(value.quantize(_CENT), "f")


def _instant(value: dt.datetime) -> str:
    text = value.isoformat()
    if value.utcoffset() == dt.timedelta(0):
        text = text.removesuffix("+00:00") + "Z"
    return text


def _line(ln: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "line_no": ln["line_no"],
        "environment_id": ln["environment_id"],
        "product_code": ln["product_code"],
        "description": ln["description"],
        "period_start": ln["period_start"].isoformat(),
        "period_end": ln["period_end"].isoformat(),
        "quantity": format(ln["quantity"], "f"),
        "unit": ln["unit"],
        "unit_price": format(ln["unit_price"], "f"),
        "net": format(ln["net"].quantize(_CENT), "f"),
        "vat_rate": format(ln["vat_rate"], "f"),
        "is_correction": ln["is_correction"],
        "charge_kind": ln["charge_kind"],
        "carried_from_period": ln["carried_from_period"],
    }


def invoice_json(f: Mapping[str, Any]) -> bytes:
    """The wire JSON of an `InvoiceIssuedV1` from its fields (as `model_validate` would take them)."""
    address: Mapping[str, Any] = f["billing_address"]
    einvoice: Mapping[str, Any] | None = f["einvoice_address"]
    lines: Sequence[Mapping[str, Any]] = f["lines"]
    resellers: Mapping[str, Decimal] = f["software_net_by_reseller"]
    return _encode(
        {
            "event_id": str(f["event_id"]),
            "occurred_at": _instant(f["occurred_at"]),
            "producer": f["producer"],
            "invoice_id": f["invoice_id"],
            "invoice_number": f["invoice_number"],
            "reference_number": f["reference_number"],
            "payer_id": f["payer_id"],
            "payer_kind": f["payer_kind"],
            "payer_business_id": f["payer_business_id"],
            "payer_name": f["payer_name"],
            "billing_address": {
                "street": address["street"],
                "postal_code": address["postal_code"],
                "city": address["city"],
                "country_code": address.get("country_code") or "FI",
            },
            "billing_channel": f["billing_channel"],
            "einvoice_address": None
            if einvoice is None
            else {"address": einvoice["address"], "operator": einvoice["operator"]},
            "billing_email": f["billing_email"],
            "billing_period": f["billing_period"],
            "invoice_date": f["invoice_date"].isoformat(),
            "due_date": f["due_date"].isoformat(),
            "currency": f.get("currency", "EUR"),
            "lines": [_line(ln) for ln in lines],
            "vat_totals": [
                {"vat_rate": format(v["vat_rate"], "f"), "net": _money(v["net"]), "vat": _money(v["vat"])}
                for v in f["vat_totals"]
            ],
            "total_net": _money(f["total_net"]),
            "total_vat": _money(f["total_vat"]),
            "total_gross": _money(f["total_gross"]),
            "software_net_by_reseller": {k: _money(v) for k, v in resellers.items()},
            "final_invoice": f["final_invoice"],
            "carried_net": _money(f["carried_net"]),
        }
    ).encode()


def check_against_contract(document: bytes) -> InvoiceIssuedV1:
    """Validate wire JSON against the contract (raises `pydantic.ValidationError` with the reason)."""
    return InvoiceIssuedV1.model_validate_json(document)
