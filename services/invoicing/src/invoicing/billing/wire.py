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
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing_contracts.invoicing import InvoiceHeldV1, InvoiceIssuedV1, InvoiceLine
from invoicing.billing.domain import (
    ChargeLine,
    MonthlyUsage,
    PayerResult,
    due_date,
    software_net_by_reseller,
)
from invoicing.billing.run import RunPeriod
from invoicing.money import ZERO
from invoicing.references import reference_for_invoice_number

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


# --- the run's decisions as the contracts name them ---

PRODUCER = "invoicing"


def line_fields(ln: ChargeLine, line_no: int) -> dict[str, Any]:
    """An invoice line's fields as the contract names them (`InvoiceLine`)."""
    return {
        "line_no": line_no,
        "environment_id": ln.environment_id,
        "product_code": ln.product_code,
        "description": ln.description,
        "period_start": ln.period_start,
        "period_end": ln.period_end,
        "quantity": ln.quantity,
        "unit": ln.unit.value,
        "unit_price": ln.unit_price,
        "net": ln.net,
        "vat_rate": ln.vat_rate,
        "is_correction": ln.is_correction,
        "charge_kind": ln.kind.value,
        "carried_from_period": None if ln.carried_from is None else str(ln.carried_from),
    }


def wire_line(ln: ChargeLine, line_no: int) -> InvoiceLine:
    return InvoiceLine.model_validate(line_fields(ln, line_no))


def invoice_fields(
    result: PayerResult,
    period: RunPeriod,
    *,
    payment_term_days: int,
    number: int,
    invoice_id: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The issued invoice's fields as the contract names them (`InvoiceIssuedV1`)."""
    payer = result.payer_terms
    if payer is None:
        raise ValueError(f"payer {result.payer_id} has no contract to take its name and address from")
    totals = result.settlement.totals
    carried = sum((ln.net for ln in totals.lines if ln.carried_from is not None), ZERO)
    return {
        "event_id": uuid.uuid4(),
        "occurred_at": now,
        "producer": PRODUCER,
        "invoice_id": invoice_id,
        "invoice_number": str(number),
        "reference_number": reference_for_invoice_number(number),
        "payer_id": result.payer_id,
        "payer_kind": payer.payer_kind,
        "payer_business_id": result.payer_id,
        "payer_name": payer.invoice_name,
        "billing_address": payer.billing_address,
        "billing_channel": payer.billing_channel,
        "einvoice_address": payer.einvoice_address,
        "billing_email": payer.billing_email,
        "billing_period": str(period.month),
        "invoice_date": period.run_date,
        "due_date": due_date(period.run_date, payment_term_days),
        "lines": [line_fields(ln, i) for i, ln in enumerate(totals.lines, start=1)],
        "vat_totals": [{"vat_rate": v.vat_rate, "net": v.net, "vat": v.vat} for v in totals.vat_totals],
        "total_net": totals.total_net,
        "total_vat": totals.total_vat,
        "total_gross": totals.total_gross,
        "software_net_by_reseller": software_net_by_reseller(totals.lines, result.reseller_of),
        "final_invoice": result.is_final,
        "carried_net": carried,
    }


def held_message(result: PayerResult, period: RunPeriod, now: dt.datetime) -> InvoiceHeldV1:
    """B-15: the lines a payer's run held under the minimum invoice, announced."""
    settlement = result.settlement
    return InvoiceHeldV1(
        event_id=uuid.uuid4(),
        occurred_at=now,
        producer=PRODUCER,
        payer_id=result.payer_id,
        payer_business_id=result.payer_id,
        billing_period=str(period.month),
        held_net=settlement.totals.total_net,
        accumulated_held_net=settlement.accumulated_held_net,
        lines=[wire_line(ln, i) for i, ln in enumerate(settlement.lines, start=1)],
    )


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    """An invoice a batch issues: its number and the wire document published and stored."""

    payer_id: str
    invoice_id: str
    number: int
    fields: Mapping[str, Any]
    document: bytes


def monthly_usage(data: Mapping[str, Any] | None) -> MonthlyUsage:
    """Metering's figures (`UsageFigures` JSON, validated when it was consumed) as the domain's usage.

    Read directly rather than through the contract again: a run reads one per environment, and
    `MonthlyUsage` itself refuses negative or non-integer counts.
    """
    if data is None:
        return MonthlyUsage()
    hours = data.get("billable_hours") or {}
    return MonthlyUsage(
        vouchers=data["vouchers"],
        payees=data["payees"],
        einvoices_sent=data["einvoices_sent"],
        einvoices_received=data["einvoices_received"],
        billable_users=data["billable_users"],
        signatures=data["signatures"],
        billable_hours={k: Decimal(v) for k, v in hours.items()},
    )
