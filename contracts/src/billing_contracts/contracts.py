"""Contract lifecycle commands from sales and CRM systems into invoicing (SPEC B-01, B-17…B-29)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from billing_contracts.base import BusinessId, EnvironmentId, Message


class PackageCode(StrEnum):
    """Product version (package) an environment subscribes to; its prices come from the price list (B-07)."""

    ALKU = "alku"
    KEVYT = "kevyt"
    PERUS = "perus"
    LAAJA = "laaja"
    JOUSTO = "jousto"
    SOLO = "solo"
    TALLENNUS = "tallennus"
    ALLEKIRJOITUS = "allekirjoitus"


class BillingChannel(StrEnum):
    """How invoices reach the payer (B-20, B-21)."""

    EINVOICE = "einvoice"
    EMAIL = "email"
    PAPER = "paper"


class PayerKind(StrEnum):
    """Who pays the environment's invoices (B-17)."""

    COMPANY = "company"
    ACCOUNTING_FIRM = "accounting_firm"


class PostalAddress(BaseModel):
    """A postal address in Finland or abroad."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    street: str = Field(min_length=1, max_length=80, description="Street address.")
    postal_code: str = Field(min_length=1, max_length=20, description="Postal code.")
    city: str = Field(min_length=1, max_length=40, description="Post office / city.")
    country_code: str = Field(
        default="FI", pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code."
    )


class EInvoiceAddress(BaseModel):
    """An e-invoice address and the operator that serves it; tied to one business ID (B-28)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    address: str = Field(min_length=4, max_length=35, description="OVT code or IBAN, e.g. `003720774740`.")
    operator: str = Field(min_length=2, max_length=35, description="Operator id or bank BIC, e.g. `003723327487`.")


class BillingContact(BaseModel):
    """The payer's billing contact person (B-24)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1, max_length=70, description="Full name.")
    phone: str = Field(min_length=3, max_length=40, description="Phone number.")
    email: EmailStr = Field(description="Email address.")


class Requester(BaseModel):
    """Who asked for a change; B-25 decides whether they may."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    person_name: str = Field(min_length=1, max_length=100, description="Name of the requesting person.")
    user_id: str | None = Field(default=None, max_length=100, description="Their user id in the environment, if a user.")
    role: str | None = Field(
        default=None,
        max_length=40,
        description="Their role in the environment: `main_user` (Pääkäyttäjä) or `custom` (Muokattu) among others.",
    )
    has_basic_info_and_user_rights: bool = Field(
        default=False, description="A `custom` role has rights to company basic info and user management."
    )
    is_signatory: bool = Field(
        default=False, description="Registered as signatory (nimenkirjoitusoikeus) of the company."
    )


class _ContractCommand(Message):
    environment_id: EnvironmentId

    def kafka_key(self) -> bytes:
        return self.environment_id.encode()


class ContractSignedV1(_ContractCommand):
    """A customer signed a contract for one environment; billing starts on the production date (B-01)."""

    message_type: ClassVar[str] = "contracts.contract-signed"

    business_id: BusinessId
    company_name: str = Field(min_length=1, max_length=80, description="Company name used on invoices (B-22).")
    package: PackageCode = Field(description="Package subscribed to.")
    production_date: dt.date = Field(description="Billing starts on this date; its month is billed in full (B-01, B-02).")
    payer: PayerKind = Field(default=PayerKind.COMPANY, description="Who pays (B-17); Tallennus is paid by its firm.")
    accounting_firm_id: str | None = Field(
        default=None, max_length=64, description="Id of the environment's accounting firm, if any (P-03)."
    )
    accounting_firm_business_id: BusinessId | None = Field(
        default=None, description="Business ID of the accounting firm (the payer when `payer` is `accounting_firm`)."
    )
    reseller_partner_id: str | None = Field(
        default=None, max_length=64, description="Partner firm that resold the software, for commissions (P-08)."
    )
    own_use: bool = Field(
        default=False, description="The partner firm's own bookkeeping environment (own-use discount, P-07)."
    )
    billing_address: PostalAddress = Field(description="Address invoices are sent to.")
    billing_channel: BillingChannel = Field(default=BillingChannel.EINVOICE, description="Invoice channel (B-21).")
    einvoice_address: EInvoiceAddress | None = Field(
        default=None, description="Required when the channel is `einvoice` (B-20)."
    )
    billing_email: EmailStr | None = Field(default=None, description="Required when the channel is `email`.")
    billing_contact: BillingContact | None = Field(default=None, description="Billing contact person (B-24).")
