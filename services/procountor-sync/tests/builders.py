"""Builders of valid contracts for procountor-sync's tests (business IDs, references, invoices)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_HALF_UP, Decimal

from billing_contracts.contracts import (
    BillingChannel,
    BillingContact,
    EInvoiceAddress,
    PackageCode,
    PayerKind,
    PostalAddress,
)
from billing_contracts.invoicing import (
    ContractChangedV1,
    ContractStatus,
    InvoiceIssuedV1,
    InvoiceLine,
    VatTotal,
)
from billing_contracts.references import first_business_id_from, with_reference_check_digit

CENT = Decimal("0.01")


def unique_business_id() -> str:
    """A valid business ID no other test uses (7-digit base with its Y-tunnus check digit)."""
    return first_business_id_from(uuid.uuid4().int % 10_000_000)


def reference_for(number: int) -> str:
    return with_reference_check_digit(number)


def invoice(
    *,
    business_id: str | None = None,
    prices: list[tuple[str, Decimal, Decimal]] | None = None,
    channel: BillingChannel = BillingChannel.EINVOICE,
    country: str = "FI",
    operator: str = "003721291126",
    occurred_at: dt.datetime | None = None,
) -> InvoiceIssuedV1:
    """An issued invoice with consistent totals; `prices` are (product code, quantity, unit price)."""
    number = 10_000_000 + uuid.uuid4().int % 80_000_000
    bid = business_id or unique_business_id()
    rows = prices or [
        ("KEVYT-MONTHLY", Decimal(1), Decimal("39.00")),
        ("EXTRA-VOUCHER", Decimal(3), Decimal("1.79")),
    ]
    lines = [
        InvoiceLine(
            line_no=n,
            environment_id=f"env-{bid}",
            product_code=code,
            description=f"{code.title()} 10/2026",
            period_start=dt.date(2026, 10, 1),
            period_end=dt.date(2026, 10, 31),
            quantity=qty,
            unit="month" if code.endswith("MONTHLY") else "piece",
            unit_price=price,
            net=(qty * price).quantize(CENT, rounding=ROUND_HALF_UP),
            vat_rate=Decimal("25.5"),
            charge_kind="monthly_fee" if code.endswith("MONTHLY") else "extra_voucher",
        )
        for n, (code, qty, price) in enumerate(rows, start=1)
    ]
    net = sum((ln.net for ln in lines), Decimal(0))
    vat = (net * Decimal("0.255")).quantize(CENT, rounding=ROUND_HALF_UP)
    return InvoiceIssuedV1(
        event_id=uuid.uuid4(),
        occurred_at=occurred_at or dt.datetime.now(dt.UTC),
        producer="invoicing",
        invoice_id=f"INV-{number}",
        invoice_number=str(number),
        reference_number=reference_for(number),
        payer_id=bid,
        payer_kind=PayerKind.COMPANY,
        payer_business_id=bid,
        payer_name=f"Asiakas {bid} Oy",
        billing_address=PostalAddress(street="Mannerheimintie 1", postal_code="00100", city="Helsinki",
                                      country_code=country),
        billing_channel=channel,
        einvoice_address=EInvoiceAddress(address="0037" + bid.replace("-", ""), operator=operator),
        billing_email="laskut@example.fi",
        billing_period="2026-10",
        invoice_date=dt.date(2026, 11, 2),
        due_date=dt.date(2026, 11, 12),
        lines=lines,
        vat_totals=[VatTotal(vat_rate=Decimal("25.5"), net=net, vat=vat)],
        total_net=net,
        total_vat=vat,
        total_gross=net + vat,
    )  # fmt: skip


def contract_changed(
    issued: InvoiceIssuedV1,
    *,
    change: str = "company_name_changed",
    company_name: str | None = None,
    contact: str | None = None,
    payer_id: str | None = None,
    occurred_at: dt.datetime | None = None,
) -> ContractChangedV1:
    """Invoicing's announcement of the payer's own contract, holding the billing data `issued` carries."""
    bid = issued.payer_business_id
    return ContractChangedV1(
        event_id=uuid.uuid4(),
        occurred_at=occurred_at or dt.datetime.now(dt.UTC),
        producer="invoicing",
        contract_id=f"C-env-{bid}",
        environment_id=f"env-{bid}",
        business_id=bid,
        company_name=company_name or issued.payer_name,
        status=ContractStatus.ACTIVE,
        package=PackageCode.KEVYT,
        production_date=dt.date(2026, 1, 1),
        change=change,
        payer_kind=PayerKind.COMPANY,
        payer_id=payer_id or bid,
        billing_address=issued.billing_address,
        billing_channel=issued.billing_channel,
        einvoice_address=issued.einvoice_address,
        billing_email=issued.billing_email,
        billing_contact=None
        if contact is None
        else BillingContact(name=contact, phone="+358401234567", email="talous@example.fi"),
    )
