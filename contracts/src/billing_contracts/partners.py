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


class ExamKind(StrEnum):
    """An exam result a person can hold, per software (P-04)."""

    CERTIFICATION = "certification"
    AUTHORIZATION_ONLINE = "authorization_online"
    AUTHORIZATION_IN_PERSON = "authorization_in_person"


class CommissionLineKind(StrEnum):
    """What a line of a commission statement is (P-08)."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class _FirmMessage(Message):
    key_field: ClassVar[str | None] = "firm_id"

    firm_id: str = Field(min_length=1, max_length=64, description=_FIRM_ID)


_EXPERT_ID = "Pseudonymous id of the person (never a personal identity code)."


class AccountingFirmRegisteredV1(_FirmMessage):
    """An accounting firm signed the cooperation agreement and joined the partner program (P-02).

    Sent again with a later `agreement_signed_on` when a firm whose agreement ended signs a new one.
    """

    message_type: ClassVar[str] = "partner-program.accounting-firm-registered"

    business_id: BusinessId = Field(description="Business ID of the accounting firm.")
    firm_name: str = Field(min_length=1, max_length=100, description="Name of the accounting firm.")
    agreement_signed_on: Date = Field(
        description="Date the accounting-firm cooperation agreement was signed (P-02)."
    )


class CooperationAgreementEndedV1(_FirmMessage):
    """A firm's accounting-firm cooperation agreement ended: from `ended_on` it is not in the program (P-02)."""

    message_type: ClassVar[str] = "partner-program.cooperation-agreement-ended"

    ended_on: Date = Field(
        description="First day without an agreement; the firm has no tier and no benefits from this day on."
    )
    reason: str | None = Field(default=None, max_length=500, description="Why it ended, for the audit.")


class AccountingFirmDetailsChangedV1(_FirmMessage):
    """A registered firm's master data for the public accounting-firm search (P-09); replaces the earlier data."""

    message_type: ClassVar[str] = "partner-program.accounting-firm-details-changed"

    firm_name: str = Field(min_length=1, max_length=100, description="Name shown in the directory.")
    business_id: BusinessId = Field(description="Business ID of the accounting firm, check digit included.")
    city: str = Field(min_length=1, max_length=60, description="City (kotipaikka) shown and searched.")
    website: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^https?://[^\s]+$",
        description="The firm's web site, an http(s) URL.",
    )
    presentation: str | None = Field(
        default=None,
        max_length=1000,
        description="Short presentation text, shown from Gold (P-06: firm presentation on the vendor's site).",
    )
    extended_presentation: str | None = Field(
        default=None,
        max_length=5000,
        description="Longer presentation, shown for Platinum only (P-06: extended presentation).",
    )
    software: list[ExpertSoftware] = Field(
        default_factory=list,
        max_length=2,
        description="The e-financial software the firm offers its clients; searchable in the directory.",
    )


class ExpertCertifiedV1(_FirmMessage):
    """An expert of the firm passed the online certification exam (P-04)."""

    message_type: ClassVar[str] = "partner-program.expert-certified"

    expert_id: str = Field(min_length=1, max_length=100, description=_EXPERT_ID)
    software: ExpertSoftware = Field(description="The software the exam was for.")
    passed_on: Date = Field(description="Date the exam was passed.")


class ExpertAuthorizationPassedV1(_FirmMessage):
    """An expert of the firm passed one part of the authorization exam (P-04).

    Authorized means both parts passed, the in-person part after the online part; an authorized
    expert also counts as certified.
    """

    message_type: ClassVar[str] = "partner-program.expert-authorization-passed"

    expert_id: str = Field(min_length=1, max_length=100, description=_EXPERT_ID)
    software: ExpertSoftware = Field(description="The software the exam was for.")
    part: AuthorizationPart = Field(description="Which part of the exam was passed.")
    passed_on: Date = Field(description="Date the part was passed.")


class ExamResultWithdrawnV1(_FirmMessage):
    """An exam result was withdrawn (e.g. granted in error): it no longer counts (P-04)."""

    message_type: ClassVar[str] = "partner-program.exam-result-withdrawn"

    expert_id: str = Field(min_length=1, max_length=100, description=_EXPERT_ID)
    software: ExpertSoftware = Field(description="The software of the withdrawn result.")
    exam: ExamKind = Field(
        description=(
            "Which result: the certification, or a part of the authorization exam (withdrawing the "
            "online part also ends the authorization built on it)."
        )
    )
    withdrawn_on: Date = Field(
        description="Date of the withdrawal; every result of this kind passed on or before it stops counting."
    )
    reason: str = Field(min_length=1, max_length=500, description="Why it was withdrawn, for the audit.")


class ExpertJoinedFirmV1(_FirmMessage):
    """A person started working for the firm (`firm_id`, the Kafka key); moving from another firm ends that (P-04).

    Exam results belong to the person: from `joined_on` the person's valid results count for this
    firm and no longer for the one they left.
    """

    message_type: ClassVar[str] = "partner-program.expert-joined-firm"

    expert_id: str = Field(min_length=1, max_length=100, description=_EXPERT_ID)
    joined_on: Date = Field(description="First day at the firm.")


class ExpertLeftFirmV1(_FirmMessage):
    """A person left the firm (`firm_id`); from `left_on` their results no longer count for it (P-04)."""

    message_type: ClassVar[str] = "partner-program.expert-left-firm"

    expert_id: str = Field(min_length=1, max_length=100, description=_EXPERT_ID)
    left_on: Date = Field(description="First day the person no longer works for the firm.")


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
    in_program: bool = Field(
        default=True,
        description=(
            "False when the cooperation agreement ended: the firm has left the program and has no "
            "benefits; `new_tier` is then `partner` so that a reader of the tier alone gives no "
            "own-use discount and no directory listing (P-02)."
        ),
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
    kind: CommissionLineKind = Field(
        default=CommissionLineKind.INVOICE,
        description="An invoice, or a credit note (its own labelled line).",
    )
    credited_invoice_number: str | None = Field(
        default=None, max_length=40, description="For a credit note: the number of the invoice it credits."
    )
    billing_period: YearMonth | None = Field(
        default=None,
        description=(
            "For an invoice: the month it bills; earlier than the statement's month when the invoice "
            "came after that month's statement was made (a late invoice is paid on the next statement)."
        ),
    )
    label: str | None = Field(
        default=None,
        max_length=200,
        description="The line's text on the statement, e.g. `Hyvityslasku 100245`.",
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
    issued_on: Date | None = Field(
        default=None, description="Date the statement was made (Helsinki), after the month's billing run."
    )
