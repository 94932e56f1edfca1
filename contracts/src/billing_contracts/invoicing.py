"""What invoicing publishes: contract state, invoices, held lines, credit notes, refunds, refusals."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from billing_contracts.base import (
    INT32_MAX,
    BusinessId,
    Date,
    EnvironmentId,
    Message,
    Money,
    Quantity,
    ReferenceNumber,
    UnitPrice,
    YearMonth,
)
from billing_contracts.contracts import (
    BillingChannel,
    BillingContact,
    EInvoiceAddress,
    PackageCode,
    PayerKind,
    PostalAddress,
)


class ContractStatus(StrEnum):
    """Lifecycle state of a contract."""

    SIGNED = "signed"
    ACTIVE = "active"
    TERMINATION_NOTICED = "termination_noticed"
    TERMINATED = "terminated"


class ContractChangedV1(Message):
    """The current state of a contract after any change; partners count end customers from it (P-03)."""

    message_type: ClassVar[str] = "invoicing.contract-changed"
    key_field: ClassVar[str | None] = "environment_id"

    contract_id: str = Field(min_length=1, max_length=64, description="Id of the contract in invoicing.")
    environment_id: EnvironmentId = Field(description="The contract's environment; the Kafka key.")
    business_id: BusinessId = Field(description="Business ID of the customer company.")
    company_name: str = Field(max_length=80, description="Company name on invoices.")
    status: ContractStatus = Field(description="State after the change.")
    package: PackageCode = Field(description="Package in effect now.")
    production_date: Date = Field(description="Billing start date (B-01).")
    end_date: Date | None = Field(
        default=None, description="Last day of the contract after termination (B-27)."
    )
    accounting_firm_id: str | None = Field(
        default=None, description="The environment's accounting firm (P-03)."
    )
    reseller_partner_id: str | None = Field(default=None, description="Reseller partner (P-08).")
    own_use: bool = Field(default=False, description="The partner firm's own environment (P-07).")
    change: str = Field(
        max_length=60, description="What changed, e.g. `signed`, `package_changed`, `terminated`."
    )
    effective_from: Date | None = Field(
        default=None,
        description=(
            "First day of the first billed month the change applies to (B-26); a change that "
            "takes effect later is announced again, with the new state, when it does."
        ),
    )
    data_retained_until: Date | None = Field(
        default=None, description="After termination, the environment's data is kept until this day (B-27)."
    )
    payer_kind: PayerKind | None = Field(default=None, description="Who pays now (B-17).")
    payer_id: str | None = Field(
        default=None, max_length=64, description="Business ID of the payer now (B-17)."
    )
    accounting_firm_business_id: BusinessId | None = Field(
        default=None, description="Business ID of the accounting firm now, if known."
    )
    predecessor_contract_id: str | None = Field(
        default=None,
        max_length=64,
        description="The contract this one replaced on a business ID change (B-28).",
    )
    successor_contract_id: str | None = Field(
        default=None,
        max_length=64,
        description="The contract that replaces this one on a business ID change (B-28).",
    )
    # The billing data now (I-02: procountor-sync pushes a change of the payer's own contract to
    # the Procountor customer). Optional: events published before they were added carry none.
    billing_address: PostalAddress | None = Field(
        default=None, description="Address invoices are sent to now (B-22)."
    )
    billing_channel: BillingChannel | None = Field(
        default=None, description="Channel invoices are sent by now (B-20, B-21)."
    )
    einvoice_address: EInvoiceAddress | None = Field(
        default=None, description="E-invoice address and operator now (B-20)."
    )
    billing_email: str | None = Field(
        default=None, max_length=254, description="Billing email now (the email channel, B-21)."
    )
    billing_contact: BillingContact | None = Field(
        default=None, description="Billing contact person now (B-24)."
    )


class InvoiceLine(BaseModel):
    """One invoice line (B-18)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    line_no: int = Field(ge=1, le=INT32_MAX, description="Position on the invoice, from 1.")
    environment_id: EnvironmentId = Field(description="Environment the line is for (B-17).")
    product_code: str = Field(
        max_length=40, description="Product code, e.g. `KEVYT-MONTHLY`, `EXTRA-VOUCHER`."
    )
    description: str = Field(max_length=200, description="Line text printed on the invoice.")
    period_start: Date = Field(description="First day of the service period.")
    period_end: Date = Field(description="Last day of the service period.")
    quantity: Quantity = Field(description="Quantity billed, in `unit`s.")
    unit: str = Field(
        max_length=20, description="Unit: `month`, `piece`, `person`, `message`, `user`, `hour`."
    )
    unit_price: UnitPrice = Field(description="Net price of one unit, from the price list (B-07).")
    net: Money = Field(description="Line net, rounded half up to cents (B-18).")
    vat_rate: Quantity = Field(description="VAT percent in force for the service period, e.g. `25.5`.")
    is_correction: bool = Field(default=False, description="A labelled correction for an earlier month.")
    charge_kind: str | None = Field(
        default=None,
        max_length=30,
        description=(
            "Why the line is charged: `monthly_fee`, `extra_voucher`, `extra_payee`, `einvoice_sent`, "
            "`einvoice_received`, `user`, `signature`, `minimum_charge`, `own_use_discount` or "
            "`service_hours`; the key to its specification (B-19)."
        ),
    )
    carried_from_period: YearMonth | None = Field(
        default=None,
        description="Billing period whose run held the line under the minimum invoice (B-15), if carried.",
    )


class VatTotal(BaseModel):
    """Totals of one VAT rate (B-18)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    vat_rate: Quantity = Field(description="VAT percent, e.g. `25.5`.")
    net: Money = Field(description="Sum of the line nets at this rate.")
    vat: Money = Field(description="VAT computed on that sum, rounded half up to cents (B-18).")


class InvoiceIssuedV1(Message):
    """An invoice was issued; procountor-sync sends it, partners compute commissions from it (I-01, P-08)."""

    message_type: ClassVar[str] = "invoicing.invoice-issued"
    key_field: ClassVar[str | None] = "payer_id"

    invoice_id: str = Field(min_length=1, max_length=64, description="Id of the invoice in invoicing.")
    invoice_number: str = Field(
        min_length=1, max_length=40, description="Unique, increasing invoice number (B-18)."
    )
    reference_number: ReferenceNumber = Field(
        description="Finnish reference number (viitenumero) with its check digit (B-18).",
    )
    payer_id: str = Field(
        min_length=1, max_length=64, description="Id of the payer (billing customer); the Kafka key."
    )
    payer_kind: PayerKind = Field(description="Whether a company or an accounting firm pays (B-17).")
    payer_business_id: BusinessId = Field(description="Business ID of the payer.")
    payer_name: str = Field(max_length=80, description="Name on the invoice (B-22).")
    billing_address: PostalAddress = Field(description="Payer's billing address (B-18, B-22).")
    billing_channel: BillingChannel = Field(description="Channel the invoice is sent by (B-20, B-21).")
    einvoice_address: EInvoiceAddress | None = Field(default=None, description="For the e-invoice channel.")
    billing_email: str | None = Field(default=None, description="For the email channel.")
    billing_period: YearMonth = Field(description="The month billed in arrears (B-04).")
    invoice_date: Date = Field(description="Invoice date, the billing run day (B-03).")
    due_date: Date = Field(description="Invoice date + payment term days (B-05).")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency.")
    lines: list[InvoiceLine] = Field(min_length=1, description="Lines grouped per environment (B-17).")
    vat_totals: list[VatTotal] = Field(min_length=1, description="Net and VAT per VAT rate (B-18).")
    total_net: Money = Field(description="Sum of the line nets.")
    total_vat: Money = Field(description="Sum of the VAT of every rate.")
    total_gross: Money = Field(description="`total_net` + `total_vat`, the amount to pay.")
    software_net_by_reseller: dict[str, Money] = Field(
        default_factory=dict,
        description="Net software charges per reseller partner id, for commissions (P-08).",
    )
    final_invoice: bool = Field(
        default=False,
        description="The invoice of a contract's last month or of a payer left without contracts (B-15, B-27).",
    )
    carried_net: Money = Field(
        default=Decimal("0.00"),
        description="Net of the lines on it that earlier runs held under the minimum invoice (B-15).",
    )


class InvoiceHeldV1(Message):
    """A payer's invoice stayed under 10.00 € before VAT; its lines are held for the next run (B-15)."""

    message_type: ClassVar[str] = "invoicing.invoice-held"
    key_field: ClassVar[str | None] = "payer_id"

    payer_id: str = Field(
        min_length=1, max_length=64, description="Id of the payer (billing customer); the Kafka key."
    )
    payer_business_id: BusinessId = Field(description="Business ID of the payer.")
    billing_period: YearMonth = Field(description="The month whose run held the lines (B-04).")
    held_net: Money = Field(description="Net of the lines held in this run.")
    accumulated_held_net: Money = Field(
        description=(
            "Net of everything now held for the payer, this run included; invoiced once it "
            "reaches 10.00 €, or in the January and July runs whatever the sum (B-15)."
        ),
    )
    minimum_invoice_net: Money = Field(
        default=Decimal("10.00"),
        description="The minimum invoice total before VAT in force (B-15).",
    )
    lines: list[InvoiceLine] = Field(min_length=1, description="The lines held in this run.")


class CreditNoteLine(BaseModel):
    """One line of a credit note; amounts are positive and mean money given back."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    line_no: int = Field(ge=1, le=INT32_MAX, description="Position on the credit note, from 1.")
    credited_line_no: int | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Line of the credited invoice this line credits, if one.",
    )
    environment_id: EnvironmentId = Field(description="Environment the credited charge was for.")
    product_code: str = Field(max_length=40, description="Product code of the credited charge.")
    description: str = Field(max_length=200, description="Line text printed on the credit note.")
    period_start: Date = Field(description="First day of the credited service period.")
    period_end: Date = Field(description="Last day of the credited service period.")
    quantity: Quantity = Field(description="Quantity credited, in `unit`s.")
    unit: str = Field(max_length=20, description="Unit, as on the credited line.")
    unit_price: UnitPrice = Field(description="Net unit price credited.")
    net: Money = Field(ge=0, description="Net credited, rounded half up to cents (B-18).")
    vat_rate: Quantity = Field(description="VAT percent of the credited service period.")


class CreditNoteIssuedV1(Message):
    """A credit note was issued against an earlier invoice; procountor-sync sends it (I-01).

    All amounts are positive: they are what the payer gets back. Partners subtract the
    software charges credited from the commission base (P-08).
    """

    message_type: ClassVar[str] = "invoicing.credit-note-issued"
    key_field: ClassVar[str | None] = "payer_id"

    credit_note_id: str = Field(
        min_length=1, max_length=64, description="Id of the credit note in invoicing."
    )
    credit_note_number: str = Field(
        min_length=1,
        max_length=40,
        description="Its own number, from the same unique increasing series as invoices (B-18).",
    )
    reference_number: ReferenceNumber = Field(description="Its own Finnish reference number (B-18).")
    credited_invoice_id: str = Field(
        min_length=1, max_length=64, description="Id of the invoice being credited."
    )
    credited_invoice_number: str = Field(
        min_length=1, max_length=40, description="Number of the invoice being credited."
    )
    payer_id: str = Field(
        min_length=1, max_length=64, description="Id of the payer (billing customer); the Kafka key."
    )
    payer_business_id: BusinessId = Field(description="Business ID of the payer.")
    payer_name: str = Field(max_length=80, description="Name on the credit note (B-22).")
    credit_date: Date = Field(description="Date of the credit note.")
    reason: str = Field(min_length=1, max_length=500, description="Why the invoice is credited.")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency.")
    lines: list[CreditNoteLine] = Field(min_length=1, description="What is credited.")
    vat_totals: list[VatTotal] = Field(min_length=1, description="Net and VAT credited per VAT rate.")
    total_net: Money = Field(ge=0, description="Net credited.")
    total_vat: Money = Field(ge=0, description="VAT credited.")
    total_gross: Money = Field(ge=0, description="`total_net` + `total_vat`, the amount credited.")
    software_net_by_reseller: dict[str, Money] = Field(
        default_factory=dict,
        description="Net software charges credited per reseller partner id, for commissions (P-08).",
    )


class RefundRecordedV1(Message):
    """Money to return to the payer, not to credit (B-06).

    A payment no open invoice took, or a credit note on an invoice already paid. Invoicing keeps
    the one refund list (`GET /refunds`).
    """

    message_type: ClassVar[str] = "invoicing.refund-recorded"
    key_field: ClassVar[str | None] = "payer_id"

    refund_id: str = Field(min_length=1, max_length=64, description="Id of the refund record in invoicing.")
    payer_id: str = Field(
        min_length=1, max_length=64, description="Id of the payer (billing customer); the Kafka key."
    )
    payer_business_id: BusinessId = Field(description="Business ID of the payer to return the money to.")
    amount: Money = Field(gt=0, description="Amount to return to the payer.")
    payment_date: Date = Field(description="Date of the payment being returned.")
    payment_event_id: UUID = Field(
        description="`event_id` of the `PaymentReceivedV1` that brought the payment; for the refund of a "
        "credit note, the `CreditNoteIssuedV1`'s.",
    )
    procountor_invoice_id: str | None = Field(
        default=None, max_length=64, description="Procountor invoice the payment was made against, if any."
    )
    reason: str = Field(
        max_length=500, description="Why it is refunded, e.g. `no open invoice` or `overpayment`."
    )
    credit_note_id: str | None = Field(
        default=None,
        max_length=64,
        description="The credit note whose credit, on an invoice already paid, is returned (B-06).",
    )


class ChangeRequestRefusedV1(Message):
    """Invoicing refused a command, with the rule and the reason (B-04, B-25, B-29).

    Keyed like the refused command, so it follows it in the same partition order.
    """

    message_type: ClassVar[str] = "invoicing.change-request-refused"
    key_field: ClassVar[str | None] = "key"

    key: str = Field(
        min_length=1, max_length=100, description="Kafka key of the refused command; this message's key too."
    )
    environment_id: EnvironmentId | None = Field(
        default=None, description="Environment the refused command was about, if one."
    )
    refused_event_id: UUID = Field(description="`event_id` of the refused command.")
    contract_id: str | None = Field(
        default=None, max_length=64, description="Contract the refused command was about, if one exists."
    )
    refused_message_type: str = Field(
        min_length=1,
        max_length=100,
        description="`message_type` of the refused command, e.g. `contracts.advance-billing-requested`.",
    )
    rule: str = Field(
        pattern=r"^[A-Z]-\d{2}$", description="Id of the SPEC rule that refuses it, e.g. `B-04`."
    )
    reason: str = Field(
        min_length=1, max_length=1000, description="Human-readable reason, for the requester."
    )


class BillingRunFinishedV1(Message):
    """An attempt of a month's billing run finished; partners make that month's commission statements (P-08).

    Sent at the end of every attempt (a rerun sends it again with the period's new totals). The
    counts let a consumer know when it has received every invoice and credit note behind the
    month, whatever order the topics are read in.
    """

    message_type: ClassVar[str] = "invoicing.billing-run-finished"
    key_field: ClassVar[str | None] = "billing_period"

    run_id: str = Field(min_length=1, max_length=64, description="`run-YYYY-MM`: one run per billing period.")
    billing_period: YearMonth = Field(description="The month billed in arrears (B-04); the Kafka key.")
    run_date: Date = Field(description="Invoice date of the run (B-03).")
    attempt: int = Field(ge=1, le=INT32_MAX, description="Which attempt of this period's run finished.")
    status: str = Field(
        max_length=40, description="`completed`, or `completed_with_failures` when payers were set aside."
    )
    invoices_issued: int = Field(
        ge=0,
        le=INT32_MAX,
        description=(
            "Invoices issued for the billing period so far, by every attempt: each was published as "
            "`InvoiceIssuedV1` with this `billing_period`."
        ),
    )
    held: int = Field(ge=0, le=INT32_MAX, description="Payers of the period whose lines are held (B-15).")
    failed: int = Field(
        ge=0, le=INT32_MAX, description="Payers of the period set aside with a failure, to be rerun."
    )
    credit_notes_issued: int = Field(
        ge=0,
        le=INT32_MAX,
        description=(
            "Credit notes dated in the billing period's month, issued before the run finished; each "
            "was published as `CreditNoteIssuedV1` (P-08: they reduce that month's statement)."
        ),
    )


class InvoiceDueDateMovedV1(Message):
    """Support moved an open invoice's due date (B-23); procountor-sync moves it in Procountor too.

    Published only for an accepted move, after the audit row was written.
    """

    message_type: ClassVar[str] = "invoicing.invoice-due-date-moved"
    key_field: ClassVar[str | None] = "invoice_id"

    invoice_id: str = Field(min_length=1, max_length=64, description="Id of the invoice; the Kafka key.")
    invoice_number: str = Field(min_length=1, max_length=40, description="Number of the invoice (B-18).")
    old_due_date: Date = Field(description="The due date before the move.")
    new_due_date: Date = Field(description="The due date reminders use from now on (B-23).")
    reason: str = Field(min_length=1, max_length=500, description="Why the due date moved (audit).")
