"""Contract lifecycle commands from sales, CRM and support systems into invoicing (B-01…B-29)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from billing_contracts.base import BusinessId, Date, EnvironmentId, Message, Timestamp, YearMonth


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
    operator: str = Field(
        min_length=2, max_length=35, description="Operator id or bank BIC, e.g. `003723327487`."
    )


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
    user_id: str | None = Field(
        default=None, max_length=100, description="Their user id in the environment, if a user."
    )
    role: str | None = Field(
        default=None,
        max_length=40,
        description="Their role in the environment: `main_user` (Pääkäyttäjä) or `custom` (Muokattu) among others.",
    )
    has_basic_info_and_user_rights: bool = Field(
        default=False,
        description="A `custom` role has rights to company basic info and user management.",
    )
    is_signatory: bool = Field(
        default=False, description="Registered as signatory (nimenkirjoitusoikeus) of the company."
    )


class _ContractCommand(Message):
    key_field: ClassVar[str | None] = "environment_id"

    environment_id: EnvironmentId


class ContractSignedV1(_ContractCommand):
    """A customer signed a contract for one environment; billing starts on the production date (B-01)."""

    message_type: ClassVar[str] = "contracts.contract-signed"

    business_id: BusinessId
    company_name: str = Field(
        min_length=1, max_length=80, description="Company name used on invoices (B-22)."
    )
    package: PackageCode = Field(description="Package subscribed to.")
    production_date: Date = Field(
        description="Billing starts on this date; its month is billed in full (B-01, B-02)."
    )
    payer: PayerKind = Field(
        default=PayerKind.COMPANY, description="Who pays (B-17); Tallennus is paid by its firm."
    )
    accounting_firm_id: str | None = Field(
        default=None,
        max_length=64,
        description="Id of the environment's accounting firm, if any (P-03).",
    )
    accounting_firm_business_id: BusinessId | None = Field(
        default=None,
        description="Business ID of the accounting firm (the payer when `payer` is `accounting_firm`).",
    )
    reseller_partner_id: str | None = Field(
        default=None,
        max_length=64,
        description="Partner firm that resold the software, for commissions (P-08).",
    )
    own_use: bool = Field(
        default=False,
        description="The partner firm's own bookkeeping environment (own-use discount, P-07).",
    )
    billing_address: PostalAddress = Field(description="Address invoices are sent to.")
    billing_channel: BillingChannel = Field(
        default=BillingChannel.EINVOICE, description="Invoice channel (B-21)."
    )
    einvoice_address: EInvoiceAddress | None = Field(
        default=None, description="Required when the channel is `einvoice` (B-20)."
    )
    billing_email: EmailStr | None = Field(default=None, description="Required when the channel is `email`.")
    billing_contact: BillingContact | None = Field(default=None, description="Billing contact person (B-24).")


_REQUESTED_BY = (
    "Who asked for the change; invoicing accepts it only from a main user, a custom-role user "
    "with basic-info and user-management rights, or a signatory, and refuses anything else (B-25)."
)


class ProductionStartedV1(_ContractCommand):
    """The environment went into production; billing starts on the production date (B-01, B-02).

    Sent when the production date is confirmed or moved after signing; it replaces the
    `production_date` of `ContractSignedV1`.
    """

    message_type: ClassVar[str] = "contracts.production-started"

    production_date: Date = Field(
        description=(
            "Contract date from which billing starts; nothing before it is charged and its "
            "month is billed in full (B-01, B-02)."
        ),
    )


class PackageChangeKind(StrEnum):
    """Kind of package change; all follow the day-15 cut-off of B-26."""

    PACKAGE_SIZE = "package_size"
    TALLENNUS_PACKAGE = "tallennus_package"
    TALLENNUS_TO_TALOUSHALLINTO = "tallennus_to_taloushallinto"


class PackageChangeRequestedV1(_ContractCommand):
    """The customer asked for another package; effective this or next month by the cut-off (B-26)."""

    message_type: ClassVar[str] = "contracts.package-change-requested"

    requested_at: Timestamp = Field(
        description=(
            "When the request was received; its Helsinki day of month decides the cut-off: "
            "1–15 takes effect from the start of that month, 16 or later from the next (B-26)."
        ),
    )
    change_kind: PackageChangeKind = Field(description="Kind of change (B-26).")
    new_package: PackageCode = Field(description="Package wanted after the change.")
    previous_package: PackageCode | None = Field(
        default=None,
        description="Package the requester believes is in effect now; informational only.",
    )
    requested_by: Requester = Field(description=_REQUESTED_BY)


class AccountingFirmChangeRequestedV1(_ContractCommand):
    """The customer asked to move to another accounting firm (B-26; for Tallennus also B-29)."""

    message_type: ClassVar[str] = "contracts.accounting-firm-change-requested"

    requested_at: Timestamp = Field(
        description="When the request was received; its Helsinki day decides the cut-off (B-26).",
    )
    new_accounting_firm_id: str = Field(
        min_length=1, max_length=64, description="Id of the accounting firm wanted (P-03)."
    )
    new_accounting_firm_business_id: BusinessId | None = Field(
        default=None, description="Business ID of the new accounting firm, if known."
    )
    requested_by: Requester = Field(description=_REQUESTED_BY)


class TerminationNoticeGivenV1(_ContractCommand):
    """The customer gave notice; the contract ends at the end of the month after (B-27)."""

    message_type: ClassVar[str] = "contracts.termination-notice-given"

    notice_given_at: Timestamp = Field(
        description=(
            "When the notice was received; one month's notice, the contract ends on the last "
            "day of the month in which it runs out (10 March → 30 April). No B-26 cut-off."
        ),
    )
    reason: str | None = Field(
        default=None, max_length=500, description="Reason given by the customer, if any."
    )
    requested_by: Requester = Field(description=_REQUESTED_BY)


class BusinessIdChangeRequestedV1(_ContractCommand):
    """The company got a new business ID: new contract and environment, old one terminated (B-28).

    Keyed by the old environment id; invoicing terminates the old contract (B-27), which also
    ends its e-invoice addresses. The new environment arrives with its own `ContractSignedV1`.
    """

    message_type: ClassVar[str] = "contracts.business-id-change-requested"

    requested_at: Timestamp = Field(description="When the request was received.")
    new_business_id: BusinessId = Field(description="The company's new business ID.")
    new_environment_id: EnvironmentId = Field(
        description="Id of the new environment opened for the new business ID."
    )
    new_company_name: str = Field(
        min_length=1, max_length=80, description="Company name under the new business ID."
    )
    new_einvoice_address: EInvoiceAddress | None = Field(
        default=None,
        description=(
            "E-invoice address of the new business ID, if already known; the old business ID's "
            "addresses end with the old contract (B-28)."
        ),
    )
    requested_by: Requester = Field(description=_REQUESTED_BY)


class ApprovingFirm(StrEnum):
    """Which side of a Tallennus firm change an approval comes from (B-29)."""

    OLD = "old"
    NEW = "new"


class TallennusFirmChangeApprovedV1(_ContractCommand):
    """One of the two firms approved moving a Tallennus environment between them (B-29).

    The move takes effect only when both the old and the new firm have approved, then by the
    cut-off of B-26 counted from the later approval. The new firm's approval names the package
    it wants.
    """

    message_type: ClassVar[str] = "contracts.tallennus-firm-change-approved"

    approving_firm: ApprovingFirm = Field(description="Whether the old or the new firm approves.")
    old_accounting_firm_id: str = Field(
        min_length=1, max_length=64, description="Id of the firm the environment leaves."
    )
    new_accounting_firm_id: str = Field(
        min_length=1, max_length=64, description="Id of the firm the environment moves to."
    )
    approved_at: Timestamp = Field(description="When the written approval was received.")
    new_package: PackageCode | None = Field(
        default=None,
        description="Package the new firm wants; required on the new firm's approval (B-29).",
    )
    new_accounting_firm_business_id: BusinessId | None = Field(
        default=None,
        description=(
            "Business ID of the new firm, which becomes the payer (B-17); needed on the new "
            "firm's approval unless invoicing already knows the firm from another contract."
        ),
    )
    approved_by: Requester = Field(
        description="The person who signed the approval on behalf of the approving firm."
    )

    @model_validator(mode="after")
    def _new_firm_names_the_package(self) -> TallennusFirmChangeApprovedV1:
        if self.approving_firm is ApprovingFirm.NEW and self.new_package is None:
            raise ValueError("the new firm's approval must name the package it wants (B-29)")
        return self


class BillingContactChangeRequestedV1(_ContractCommand):
    """A written notice changed the billing contact person (B-24)."""

    message_type: ClassVar[str] = "contracts.billing-contact-change-requested"

    requested_at: Timestamp = Field(description="When the written notice was received.")
    new_contact: BillingContact = Field(description="The new contact: name, phone and email.")
    requested_by: Requester = Field(description=_REQUESTED_BY)


class CompanyNameChangeNoticeGivenV1(_ContractCommand):
    """A change notice asked to change the company name on invoices (B-22).

    A name changed in the environment's basic info does not change invoices; only this does.
    """

    message_type: ClassVar[str] = "contracts.company-name-change-notice-given"

    notice_given_at: Timestamp = Field(description="When the change notice was received.")
    old_company_name: str = Field(
        min_length=1, max_length=80, description="Company name on invoices until now."
    )
    new_company_name: str = Field(
        min_length=1, max_length=80, description="Company name to print on invoices from now."
    )
    requested_by: Requester = Field(description=_REQUESTED_BY)


#: The name the catalogue was planned with; the class is named in the past tense.
CompanyNameChangeNoticeV1 = CompanyNameChangeNoticeGivenV1


class AdvanceBillingRequestedV1(_ContractCommand):
    """The customer asked to be billed in advance; invoicing always refuses it (B-04)."""

    message_type: ClassVar[str] = "contracts.advance-billing-requested"

    requested_at: Timestamp = Field(description="When the request was received.")
    from_month: YearMonth = Field(description="First month the customer wanted billed in advance.")
    to_month: YearMonth = Field(description="Last month the customer wanted billed in advance.")
    requested_by: Requester = Field(description=_REQUESTED_BY)


class DueDateChangeRequestedV1(Message):
    """Support moved one invoice's due date on the customer's request (B-23); keyed by invoice id.

    Audited: who asked, which support user made the change, when and why.
    """

    message_type: ClassVar[str] = "contracts.due-date-change-requested"
    key_field: ClassVar[str | None] = "invoice_id"

    invoice_id: str = Field(
        min_length=1, max_length=64, description="Id of the invoice in invoicing; the Kafka key."
    )
    invoice_number: str | None = Field(
        default=None, min_length=1, max_length=40, description="Invoice number, for the audit log."
    )
    new_due_date: Date = Field(description="The due date the invoice should have.")
    reason: str = Field(min_length=1, max_length=500, description="Why the due date moves (audit).")
    changed_by: str = Field(
        min_length=1, max_length=100, description="Id of the support user who made the change."
    )
    requested_at: Timestamp = Field(description="When the customer asked.")
    requested_by: Requester = Field(description=_REQUESTED_BY)
