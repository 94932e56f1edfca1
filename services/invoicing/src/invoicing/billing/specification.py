"""B-19 specification: everything behind every invoice line, from metering's item lists over HTTP.

**Decision:** invoicing does not copy the items. Metering owns and keeps the raw usage for all
history (B-19 decision) and serves it keyset-paged; invoicing asks for the items of each line's
environment, month and kind when an invoice's specification is read. The figures billed are on
the invoice; a later change of a closed month shows in the items, and its correction line on a
later invoice says by how much.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from billing_contracts.invoicing import InvoiceIssuedV1, InvoiceLine
from invoicing.billing.domain import ChargeKind

#: Which of metering's item lists is behind each kind of line, and how to pick from it.
_ITEMS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    ChargeKind.EXTRA_VOUCHER.value: ("vouchers", {}),  # B-08…B-11: every voucher, counted or not
    ChargeKind.EXTRA_PAYEE.value: ("payees", {}),  # B-12
    ChargeKind.EINVOICE_SENT.value: ("messages", {"direction": "sent"}),  # B-13
    ChargeKind.EINVOICE_RECEIVED.value: ("messages", {"direction": "received"}),
    ChargeKind.USER.value: ("users", {}),  # B-16: the users and roles at month end
    ChargeKind.SIGNATURE.value: ("signatures", {}),
    ChargeKind.SERVICE_HOURS.value: ("hours", {"billable": True}),  # I-07, filtered by product
}
_WHY = {
    ChargeKind.MONTHLY_FEE.value: "monthly fee of the package in effect for the month (B-02, B-04)",
    ChargeKind.MINIMUM_CHARGE.value: "difference between the month's software charges and the minimum (B-14)",
    ChargeKind.OWN_USE_DISCOUNT.value: "the partner's own-use discount of the tier in effect (P-07)",
}


class ItemSource(Protocol):
    """Where the items behind a month's figures come from (metering's API)."""

    async def items(self, environment_id: str, month: str, kind: str) -> list[dict[str, Any]]: ...


class MeteringUnavailableError(Exception):
    """Metering did not answer; the specification cannot be listed now."""


@dataclass
class MeteringItemsClient:
    """Reads `GET /environments/{env}/usage/{month}/items/{kind}` of metering, following every page."""

    client: httpx.AsyncClient
    page_size: int = 1000

    async def items(self, environment_id: str, month: str, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.page_size}
            if cursor:
                params["cursor"] = cursor
            try:
                response = await self.client.get(
                    f"/environments/{environment_id}/usage/{month}/items/{kind}", params=params
                )
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise MeteringUnavailableError(
                    f"metering's item list failed: {type(exc).__name__}: {exc}"
                ) from exc
            page = response.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def _month(line: InvoiceLine) -> str:
    return f"{line.period_start.year:04d}-{line.period_start.month:02d}"


def _pick(line: InvoiceLine, items: list[dict[str, Any]], where: Mapping[str, Any]) -> list[dict[str, Any]]:
    picked = [i for i in items if all(i.get(k) == v for k, v in where.items())]
    if line.charge_kind == ChargeKind.SERVICE_HOURS.value:
        picked = [i for i in picked if i.get("service_product_code") == line.product_code]
    if line.charge_kind in (ChargeKind.EINVOICE_SENT.value, ChargeKind.EINVOICE_RECEIVED.value):
        picked = [i for i in picked if i.get("charged")]  # B-13: only fee channels are charged
    return picked


async def specification(invoice: InvoiceIssuedV1, source: ItemSource) -> dict[str, Any]:
    """Every line of the invoice with what is behind it: vouchers, payees, messages, users, signatures, hours."""
    cache: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    lines: list[dict[str, Any]] = []
    for line in invoice.lines:
        entry: dict[str, Any] = {
            "line_no": line.line_no,
            "environment_id": line.environment_id,
            "product_code": line.product_code,
            "description": line.description,
            "period": _month(line),
            "quantity": format(line.quantity, "f"),
            "net": format(line.net, "f"),
            "is_correction": line.is_correction,
            "carried_from_period": line.carried_from_period,
        }
        kind = line.charge_kind or ""
        if kind in _ITEMS:
            item_kind, where = _ITEMS[kind]
            key = (line.environment_id, _month(line), item_kind)
            if key not in cache:
                cache[key] = await source.items(*key)
            entry["item_kind"] = item_kind
            entry["items"] = _pick(line, cache[key], where)
        else:
            entry["item_kind"] = None
            entry["items"] = []
            entry["basis"] = _WHY.get(kind, "priced from the month's figures")
        lines.append(entry)
    return {
        "invoice_id": invoice.invoice_id,
        "invoice_number": invoice.invoice_number,
        "billing_period": invoice.billing_period,
        "payer_id": invoice.payer_id,
        "lines": lines,
    }
