"""What procountor-sync publishes from the Procountor API: customers, invoice delivery, payments (I-01…I-03)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from billing_contracts.base import (
    INT32_MAX,
    BusinessId,
    Date,
    Message,
    Money,
    Quantity,
    ReferenceNumber,
    Timestamp,
    UnitPrice,
)
from billing_contracts.contracts import BillingChannel, EInvoiceAddress, PostalAddress


class CustomerChangedInProcountorV1(Message):
    """A billing customer's data was changed in Procountor; invoicing applies it (I-02, B-22)."""

    message_type: ClassVar[str] = "procountor.customer-changed"
    key_field: ClassVar[str | None] = "payer_id"

    payer_id: str = Field(
        min_length=1,
        max_length=64,
        description="Id of the payer (billing customer) in invoicing; the Kafka key.",
    )
    procountor_customer_id: str = Field(
        min_length=1, max_length=64, description="Id of the customer in Procountor's customer register."
    )
    business_id: BusinessId = Field(description="Business ID of the customer.")
    changed_at: Timestamp = Field(description="When the change was made in Procountor, if known, else seen.")
    company_name: str = Field(
        min_length=1,
        max_length=80,
        description=(
            "Company name as shown in Procountor; informational, the name on invoices changes "
            "only by a change notice (B-22)."
        ),
    )
    billing_address: PostalAddress = Field(description="Billing address; flows into billing (B-22).")
    billing_channel: BillingChannel = Field(description="Billing method (B-21).")
    einvoice_address: EInvoiceAddress | None = Field(
        default=None, description="E-invoice address and operator; present for the e-invoice channel."
    )
    billing_email: EmailStr | None = Field(default=None, description="Present for the email channel.")


class DeliveryStatus(StrEnum):
    """Where an invoice is in Procountor after we handed it over (I-01)."""

    AWAITING_APPROVAL = "awaiting_approval"
    SENT = "sent"


class InvoiceDeliveredV1(Message):
    """An invoice (or credit note) of ours was created in Procountor, and possibly sent on (I-01)."""

    message_type: ClassVar[str] = "procountor.invoice-delivered"
    key_field: ClassVar[str | None] = "invoice_id"

    invoice_id: str = Field(
        min_length=1,
        max_length=64,
        description="Id of the invoice or credit note in invoicing; the Kafka key.",
    )
    procountor_invoice_id: str = Field(
        min_length=1, max_length=64, description="Id of the invoice in Procountor."
    )
    status: DeliveryStatus = Field(
        description="`awaiting_approval` when the optional approval step holds it, else `sent`."
    )
    delivered_at: Timestamp = Field(description="When Procountor accepted the invoice.")


class InvoiceDeliveryFailedV1(Message):
    """An invoice could not be handed to Procountor; the reason says why (I-01)."""

    message_type: ClassVar[str] = "procountor.invoice-delivery-failed"
    key_field: ClassVar[str | None] = "invoice_id"

    invoice_id: str = Field(
        min_length=1,
        max_length=64,
        description="Id of the invoice or credit note in invoicing; the Kafka key.",
    )
    reason: str = Field(
        min_length=1, max_length=2000, description="Why it failed, e.g. Procountor's error message."
    )
    retryable: bool = Field(
        default=False, description="Whether procountor-sync will retry by itself; false needs a person."
    )
    attempts: int = Field(default=1, ge=1, le=INT32_MAX, description="Delivery attempts made so far.")
    failed_at: Timestamp = Field(description="When the last attempt failed.")


class PaymentReceivedV1(Message):
    """A payment was recorded in Procountor against one of our invoices (I-03, B-06).

    Keyed by the payer's business ID, so that all payments of one payer are seen in order.
    """

    message_type: ClassVar[str] = "procountor.payment-received"
    key_field: ClassVar[str | None] = "payer_business_id"

    procountor_payment_id: str = Field(
        min_length=1, max_length=64, description="Id of the payment in Procountor; one payment, one event."
    )
    procountor_invoice_id: str = Field(
        min_length=1, max_length=64, description="Id of the Procountor invoice the payment was made to."
    )
    invoice_id: str | None = Field(
        default=None, max_length=64, description="Id of our invoice, when procountor-sync knows the mapping."
    )
    payer_business_id: BusinessId = Field(description="Business ID of the payer; the Kafka key.")
    amount: Money = Field(gt=0, description="Amount paid.")
    payment_date: Date = Field(description="Date the payment was made (value date).")
    reference_number: ReferenceNumber | None = Field(
        default=None, description="Reference number the payer used, if any."
    )


class ProcountorPaymentStatus(StrEnum):
    """Payment state of one of our invoices as Procountor holds it (I-03)."""

    OPEN = "open"
    PARTLY_PAID = "partly_paid"
    PAID = "paid"
    INVALIDATED = "invalidated"


class InvoicePaymentStatusChangedV1(Message):
    """Procountor's payment state of one of our invoices changed: paid, partly paid or invalidated (I-03).

    Published once per change seen, after the payments that caused it (`PaymentReceivedV1`).
    """

    message_type: ClassVar[str] = "procountor.invoice-payment-status-changed"
    key_field: ClassVar[str | None] = "invoice_id"

    invoice_id: str = Field(
        min_length=1,
        max_length=64,
        description="Id of the invoice (or credit note) in invoicing; the Kafka key.",
    )
    procountor_invoice_id: str = Field(
        min_length=1, max_length=64, description="Id of the invoice in Procountor."
    )
    status: ProcountorPaymentStatus = Field(description="The state in Procountor now.")
    procountor_status: str = Field(
        min_length=1, max_length=40, description="Procountor's own status name, e.g. `PARTLY_PAID`."
    )
    paid_amount: Money = Field(
        description="Everything settled on the invoice in Procountor: payments and credit-note offsets."
    )
    open_amount: Money = Field(description="What the payer still owes on it in Procountor (never below 0).")
    changed_at: Timestamp = Field(description="When procountor-sync saw the change.")


class TotalsFigures(BaseModel):
    """Net, VAT and gross of one invoice."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    net: Money = Field(description="Total before VAT.")
    vat: Money = Field(description="Total VAT.")
    gross: Money = Field(description="Total to pay.")


class InvoiceTotalsMismatchedV1(Message):
    """Procountor computed other totals for an invoice than invoicing did; it is held for finance (I-01).

    The invoice stays unapproved in Procountor until finance approves it there (or an operator
    cancels its delivery); never sent silently with an amount our books do not hold.
    """

    message_type: ClassVar[str] = "procountor.invoice-totals-mismatched"
    key_field: ClassVar[str | None] = "invoice_id"

    invoice_id: str = Field(
        min_length=1,
        max_length=64,
        description="Id of the invoice or credit note in invoicing; the Kafka key.",
    )
    invoice_number: str = Field(min_length=1, max_length=40, description="Our invoice number.")
    procountor_invoice_id: str = Field(
        min_length=1, max_length=64, description="Id of the invoice in Procountor."
    )
    ours: TotalsFigures = Field(description="Totals as invoicing issued them (B-18).")
    procountor: TotalsFigures = Field(description="Totals as Procountor computed them (`invoiceSumInfo`).")
    detected_at: Timestamp = Field(description="When procountor-sync compared them.")


class ProductChangedInProcountorV1(Message):
    """A product of our price lists was changed in Procountor's product register (I-02).

    For the price-list owners: it never changes a price by itself (B-07, prices are
    effective-dated data); a person decides whether a new price list follows.
    """

    message_type: ClassVar[str] = "procountor.product-changed"
    key_field: ClassVar[str | None] = "product_code"

    product_code: str = Field(
        min_length=1, max_length=40, description="Our product code (Procountor's `code`); the Kafka key."
    )
    procountor_product_id: str = Field(
        min_length=1, max_length=64, description="Id of the product in Procountor."
    )
    name: str = Field(min_length=1, max_length=100, description="Product name in Procountor now.")
    unit_price: UnitPrice = Field(description="Default unit price in Procountor now (net).")
    unit: str = Field(min_length=1, max_length=40, description="Procountor unit, e.g. `MONTH`, `PIECE`.")
    vat_rate: Quantity | None = Field(default=None, description="VAT percent in Procountor, if set.")
    active: bool = Field(description="Whether the product is active in Procountor.")
    changed_fields: list[str] = Field(
        description="Which of name, unit_price, unit, vat_rate, active differ from what we last knew."
    )
    changed_at: Timestamp = Field(description="Procountor's version time of the change, else when seen.")
