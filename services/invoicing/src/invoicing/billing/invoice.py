"""An invoice's totals, due date and status, pure (B-05, B-18): VAT per rate on the sum of the line
nets, rounded half up; due date = invoice date + payment term."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from invoicing.billing.charges import ChargeLine
from invoicing.money import ZERO, cents, vat_amount


class InvoiceStatus(StrEnum):
    """Where an issued invoice stands: a run issues it open; receivables marks it paid or credited."""

    OPEN = "open"  # money still due
    PAID = "paid"
    CREDITED = "credited"  # credited in full


@dataclass(frozen=True, slots=True)
class VatTotal:
    """Net and VAT of one VAT rate on an invoice (B-18)."""

    vat_rate: Decimal
    net: Decimal
    vat: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    """An invoice's lines grouped per environment and its totals per VAT rate (B-17, B-18)."""

    lines: tuple[ChargeLine, ...]
    vat_totals: tuple[VatTotal, ...]
    total_net: Decimal
    total_vat: Decimal
    total_gross: Decimal


def assemble_invoice(lines: Iterable[ChargeLine]) -> InvoiceTotals:
    """Group lines per environment (B-17) and total them per VAT rate (B-18).

    VAT is computed per rate on the sum of that rate's rounded line nets,
    half up; the total VAT is the sum of the per-rate amounts (EN 16931 BR-CO-14).
    """
    # Stable sort: the rule order of each environment's lines is kept.
    ordered = tuple(sorted(lines, key=lambda ln: ln.environment_id))
    nets: dict[Decimal, Decimal] = {}
    for ln in ordered:
        nets[ln.vat_rate] = nets.get(ln.vat_rate, ZERO) + ln.net
    vat_totals = tuple(
        VatTotal(vat_rate=rate, net=cents(net), vat=vat_amount(net, rate))
        for rate, net in sorted(nets.items(), reverse=True)
    )
    total_net = cents(sum((v.net for v in vat_totals), ZERO))
    total_vat = cents(sum((v.vat for v in vat_totals), ZERO))
    return InvoiceTotals(
        lines=ordered,
        vat_totals=vat_totals,
        total_net=total_net,
        total_vat=total_vat,
        total_gross=total_net + total_vat,
    )


def due_date(invoice_date: dt.date, term_days: int) -> dt.date:
    """Invoice date plus the price list's payment term (B-05, default 10 days)."""
    if term_days < 0:
        raise ValueError(f"a payment term cannot be negative, got {term_days}")
    return invoice_date + dt.timedelta(days=term_days)
