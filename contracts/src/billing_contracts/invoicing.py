"""What invoicing publishes: issued invoices and contract state (B-17…B-19, P-03, P-08)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from billing_contracts.base import BusinessId, EnvironmentId, Message, Money, Quantity, UnitPrice, YearMonth
from billing_contracts.contracts import (
    BillingChannel,
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

    contract_id: str = Field(min_length=1, max_length=64, description="Id of the contract in invoicing.")
    environment_id: EnvironmentId
    business_id: BusinessId
    company_name: str = Field(max_length=80, description="Company name on invoices.")
    status: ContractStatus = Field(description="State after the change.")
    package: PackageCode = Field(description="Package in effect now.")
    production_date: dt.date = Field(description="Billing start date (B-01).")
    end_date: dt.date | None = Field(default=None, description="Last day of the contract after termination (B-27).")
    accounting_firm_id: str | None = Field(default=None, description="The environment's accounting firm (P-03).")
    reseller_partner_id: str | None = Field(default=None, description="Reseller partner (P-08).")
    own_use: bool = Field(default=False, description="The partner firm's own environment (P-07).")
    change: str = Field(max_length=60, description="What changed, e.g. `signed`, `package_changed`, `terminated`.")

    def kafka_key(self) -> bytes:
        return self.environment_id.encode()


class InvoiceLine(BaseModel):
    """One invoice line (B-18)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    line_no: int = Field(ge=1, description="Position on the invoice, from 1.")
    environment_id: EnvironmentId
    product_code: str = Field(max_length=40, description="Product code, e.g. `KEVYT-MONTHLY`, `EXTRA-VOUCHER`.")
    description: str = Field(max_length=200, description="Line text printed on the invoice.")
    period_start: dt.date = Field(description="First day of the service period.")
    period_end: dt.date = Field(description="Last day of the service period.")
    quantity: Quantity
    unit: str = Field(max_length=20, description="Unit: `month`, `piece`, `person`, `message`, `user`, `hour`.")
    unit_price: UnitPrice
    net: Money = Field(description="Line net, rounded half up to cents (B-18).")
    vat_rate: Quantity = Field(description="VAT percent in force for the service period, e.g. `25.5`.")
    is_correction: bool = Field(default=False, description="A labelled correction for an earlier month.")


class VatTotal(BaseModel):
    """Totals of one VAT rate (B-18)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    vat_rate: Quantity
    net: Money
    vat: Money


class InvoiceIssuedV1(Message):
    """An invoice was issued; procountor-sync sends it, partners compute commissions from it (I-01, P-08)."""

    message_type: ClassVar[str] = "invoicing.invoice-issued"

    invoice_id: str = Field(min_length=1, max_length=64, description="Id of the invoice in invoicing.")
    invoice_number: str = Field(min_length=1, max_length=40, description="Unique, increasing invoice number (B-18).")
    reference_number: str = Field(
        pattern=r"^\d{4,20}$", description="Finnish reference number (viitenumero) with its check digit (B-18)."
    )
    payer_id: str = Field(min_length=1, max_length=64, description="Id of the payer (billing customer).")
    payer_kind: PayerKind
    payer_business_id: BusinessId
    payer_name: str = Field(max_length=80, description="Name on the invoice (B-22).")
    billing_address: PostalAddress
    billing_channel: BillingChannel
    einvoice_address: EInvoiceAddress | None = Field(default=None, description="For the e-invoice channel.")
    billing_email: str | None = Field(default=None, description="For the email channel.")
    billing_period: YearMonth = Field(description="The month billed in arrears (B-04).")
    invoice_date: dt.date
    due_date: dt.date = Field(description="Invoice date + payment term days (B-05).")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency.")
    lines: list[InvoiceLine] = Field(min_length=1, description="Lines grouped per environment (B-17).")
    vat_totals: list[VatTotal] = Field(min_length=1, description="Net and VAT per VAT rate (B-18).")
    total_net: Money
    total_vat: Money
    total_gross: Money
    software_net_by_reseller: dict[str, Money] = Field(
        default_factory=dict, description="Net software charges per reseller partner id, for commissions (P-08)."
    )

    def kafka_key(self) -> bytes:
        return self.payer_id.encode()
