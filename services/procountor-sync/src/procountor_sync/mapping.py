"""Pure mapping of our invoices and customers to Procountor's REST bodies (I-01, I-02)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_contracts.contracts import BillingChannel
from billing_contracts.invoicing import InvoiceIssuedV1

#: Our line units → Procountor's `InvoiceRow.unit` enum.
UNITS = {
    "month": "MONTH",
    "piece": "PIECE",
    "person": "PERSON",
    "message": "PIECE",
    "user": "PERSON",
    "hour": "HOUR",
}

#: Our billing channels → Procountor's `invoiceChannel` (B-21).
CHANNELS = {
    BillingChannel.EINVOICE: "ELECTRONIC_INVOICE",
    BillingChannel.EMAIL: "EMAIL",
    BillingChannel.PAPER: "MAIL",
}

#: ISO country code → Procountor's upper-case country enum (the ones our customers use).
COUNTRIES = {
    "FI": "FINLAND",
    "SE": "SWEDEN",
    "EE": "ESTONIA",
    "AX": "ALAND_ISLANDS",
    "NO": "NORWAY",
    "DE": "GERMANY",
}


def _address(invoice: InvoiceIssuedV1) -> dict[str, Any]:
    a = invoice.billing_address
    return {
        "name": invoice.payer_name,
        "street": a.street,
        "zip": a.postal_code,
        "city": a.city,
        "country": COUNTRIES.get(a.country_code, "FINLAND"),
    }


def business_partner_body(invoice: InvoiceIssuedV1) -> dict[str, Any]:
    """A Procountor customer for the payer of an invoice (I-02)."""
    invoicing_info: dict[str, Any] = {
        "identifier": invoice.payer_business_id,
        "invoiceChannel": CHANNELS[invoice.billing_channel],
    }
    if invoice.einvoice_address is not None:
        invoicing_info |= {
            "einvoiceAddress": invoice.einvoice_address.address,
            "einvoiceOperator": invoice.einvoice_address.operator,
        }
    if invoice.billing_email:
        invoicing_info["email"] = invoice.billing_email
    return {
        "name": invoice.payer_name,
        "type": "CUSTOMER",
        "address": _address(invoice),
        "billingAddress": _address(invoice),
        "invoicingInfo": invoicing_info,
        "paymentInfo": {"paymentMethod": "BANK_TRANSFER", "currency": invoice.currency},
    }


def invoice_body(
    invoice: InvoiceIssuedV1, *, partner_id: int, seller_iban: str, vat_status: int
) -> dict[str, Any]:
    """Procountor's sales-invoice body for one of our issued invoices (I-01).

    `originalInvoiceNumber` carries our invoice number: it is how a retry finds an invoice it
    already created (Procountor has no idempotency keys). Amounts stay Decimal; the client
    writes them as exact JSON numbers.
    """
    counter_party: dict[str, Any] = {
        "identifier": invoice.payer_business_id,
        "counterPartyAddress": _address(invoice),
    }
    if invoice.einvoice_address is not None:
        counter_party["einvoiceAddress"] = {
            "operator": invoice.einvoice_address.operator,
            "address": invoice.einvoice_address.address,
        }
    if invoice.billing_email:
        counter_party["email"] = invoice.billing_email
    return {
        "type": "SALES_INVOICE",
        "partnerId": partner_id,
        "date": invoice.invoice_date.isoformat(),
        "counterParty": counter_party,
        "billingAddress": _address(invoice),
        "paymentInfo": {
            "paymentMethod": "BANK_TRANSFER",
            "currency": invoice.currency,
            "bankAccount": {"accountNumber": seller_iban},
            "dueDate": invoice.due_date.isoformat(),
            "currencyRate": Decimal(1),
            "bankReferenceCode": invoice.reference_number,
            "bankReferenceCodeType": "FI",
        },
        "extraInfo": {"accountingByRow": False, "unitPricesIncludeVat": False},
        "discountPercent": Decimal(0),
        "vatStatus": vat_status,
        "invoiceChannel": CHANNELS[invoice.billing_channel],
        "language": "FINNISH",
        "originalInvoiceNumber": invoice.invoice_number,
        "deliveryStartDate": min(ln.period_start for ln in invoice.lines).isoformat(),
        "deliveryEndDate": max(ln.period_end for ln in invoice.lines).isoformat(),
        "invoiceRows": [
            {
                "product": ln.description[:100],
                "productCode": ln.product_code,
                "quantity": ln.quantity,
                "unit": UNITS.get(ln.unit, "PIECE"),
                "unitPrice": ln.unit_price,
                "discountPercent": Decimal(0),
                "vatPercent": ln.vat_rate,
                "startDate": ln.period_start.isoformat(),
                "endDate": ln.period_end.isoformat(),
                "comment": f"{ln.environment_id}",
            }
            for ln in invoice.lines
        ],
    }
