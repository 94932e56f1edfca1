"""The partner program: what partners publishes, and the facts about firms and experts it consumes (P-01…P-09)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from billing_contracts.base import INT32_MAX, BusinessId, Date, Message, Money, Quantity, YearMonth

_FIRM_ID = "Id of the accounting firm in the partner program; the Kafka key."


class PartnerTier(StrEnum):
    """Partner-program tier, lowest first: Partneri < Hopea < Kulta < Platina (P-01)."""

    PARTNER = "partner"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"


class ExpertSoftware(StrEnum):
    """The software an expert's exam is for (P-04)."""

    PROCOUNTOR = "procountor"
    TIKON_NETTIKON = "tikon_nettikon"


class AuthorizationPart(StrEnum):
    """The two parts of the authorization exam; in-person only after online (P-04)."""

    ONLINE = "online"
    IN_PERSON = "in_person"


class _FirmMessage(Message):
    key_field: ClassVar[str | None] = "firm_id"

    firm_id: str = Field(min_length=1, max_length=64, description=_FIRM_ID)


class AccountingFirmRegisteredV1(_FirmMessage):
    """An accounting firm signed the cooperation agreement and joined the partner program (P-02)."""

    message_type: ClassVar[str] = "partner-program.accounting-firm-registered"

    business_id: BusinessId = Field(description="Business ID of the accounting firm.")
    firm_name: str = Field(min_length=1, max_length=100, description="Name of the accounting firm.")
    agreement_signed_on: Date = Field(
        description="Date the accounting-firm cooperation agreement was signed (P-02)."
    )


class ExpertCertifiedV1(_FirmMessage):
    """An expert of the firm passed the online certification exam (P-04)."""

    message_type: ClassVar[str] = "partner-program.expert-certified"

    expert_id: str = Field(
        min_length=1,
        max_length=100,
        description="Pseudonymous id of the person (never a personal identity code).",
    )
    software: ExpertSoftware = Field(description="The software the exam was for.")
    passed_on: Date = Field(description="Date the exam was passed.")


class ExpertAuthorizationPassedV1(_FirmMessage):
    """An expert of the firm passed one part of the authorization exam (P-04).

    Authorized means both parts passed, the in-person part after the online part; an authorized
    expert also counts as certified.
    """

    message_type: ClassVar[str] = "partner-program.expert-authorization-passed"

    expert_id: str = Field(
        min_length=1,
        max_length=100,
        description="Pseudonymous id of the person (never a personal identity code).",
    )
    software: ExpertSoftware = Field(description="The software the exam was for.")
    part: AuthorizationPart = Field(description="Which part of the exam was passed.")
    passed_on: Date = Field(description="Date the part was passed.")


class PartnerTierChangedV1(_FirmMessage):
    """A firm's partner tier changed, with the reason and the counts behind it (P-05)."""

    message_type: ClassVar[str] = "partners.tier-changed"

    old_tier: PartnerTier | None = Field(
        description="Tier before the change; null when the firm enters the program."
    )
    new_tier: PartnerTier = Field(description="The highest tier whose requirements all hold (P-05).")
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="What changed, e.g. `end customers rose to 25 and one certified expert`.",
    )
    end_customers: int = Field(ge=0, le=INT32_MAX, description="Active end customers counted (P-03).")
    certified_experts: int = Field(
        ge=0, le=INT32_MAX, description="Certified experts counted, authorized ones included (P-04)."
    )
    authorized_experts: int = Field(ge=0, le=INT32_MAX, description="Authorized experts counted (P-04).")
    effective_month: YearMonth = Field(
        description="First month billed with the new tier's own-use discount (P-07)."
    )


class CommissionInvoice(BaseModel):
    """One invoice or credit note behind a commission statement (P-08)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    invoice_id: str = Field(min_length=1, max_length=64, description="Id of the invoice or credit note.")
    invoice_number: str = Field(min_length=1, max_length=40, description="Its number.")
    payer_business_id: BusinessId = Field(description="Business ID of the end customer billed.")
    invoice_date: Date = Field(description="Date of the invoice or credit note.")
    software_net: Money = Field(
        description="Net software charges on it resold by the partner; negative for a credit note."
    )


class CommissionStatementIssuedV1(Message):
    """The monthly resale commission statement of one partner (P-08)."""

    message_type: ClassVar[str] = "partners.commission-statement-issued"
    key_field: ClassVar[str | None] = "partner_id"

    statement_id: str = Field(min_length=1, max_length=64, description="Id of the statement.")
    partner_id: str = Field(
        min_length=1, max_length=64, description="Firm id of the reseller partner; the Kafka key."
    )
    month: YearMonth = Field(description="Month of the invoices behind the statement.")
    invoices: list[CommissionInvoice] = Field(
        description="Every invoice and credit note behind the commission; may be empty."
    )
    software_net_total: Money = Field(description="Sum of `software_net` over `invoices`.")
    commission_rate_percent: Quantity = Field(
        default=Decimal("10"), description="Commission percent of the net software charges (P-08)."
    )
    commission_amount: Money = Field(
        description="`software_net_total` × rate / 100, rounded half up to cents."
    )
