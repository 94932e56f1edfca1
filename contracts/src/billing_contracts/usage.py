"""Usage events published by customer environments into metering (SPEC B-08…B-16, I-04, I-07)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from billing_contracts.base import Date, EnvironmentId, Message, Quantity, Timestamp


class DocumentKind(StrEnum):
    """Kind of a document created in an environment.

    The first fifteen are vouchers under SPEC B-10; the rest are recorded but never counted.
    """

    SALES_INVOICE = "sales_invoice"
    PURCHASE_INVOICE = "purchase_invoice"
    TRAVEL_INVOICE = "travel_invoice"
    EXPENSE_INVOICE = "expense_invoice"
    PAYSLIP = "payslip"
    SALES_ORDER = "sales_order"
    QUOTE_ORDER = "quote_order"
    PURCHASE_ORDER = "purchase_order"
    MEMO_VOUCHER = "memo_voucher"
    VAT_CALCULATION = "vat_calculation"
    AUTHORITY_REPORT = "authority_report"
    MASS_LETTER = "mass_letter"
    PAYMENT_REMINDER = "payment_reminder"
    DOCUMENT = "document"
    DIRECT_BANK_TRANSFER = "direct_bank_transfer"
    # Not vouchers (B-10: "any other event type is not a voucher").
    BANK_STATEMENT = "bank_statement"
    REFERENCE_PAYMENT = "reference_payment"
    LEDGER_ENTRY_IMPORT = "ledger_entry_import"
    ATTACHMENT = "attachment"


class _UsageEvent(Message):
    environment_id: EnvironmentId

    key_field: ClassVar[str | None] = "environment_id"


class VoucherCreatedV1(_UsageEvent):
    """A document was created in an environment; it counts in its creation month (B-09, B-10)."""

    message_type: ClassVar[str] = "usage.voucher-created"

    voucher_id: str = Field(
        min_length=1,
        max_length=100,
        description="Id of the document in its environment; one voucher whatever the event id (B-08).",
        examples=["V-2026-000123"],
    )
    document_kind: DocumentKind = Field(description="Kind of document; only B-10 kinds count as vouchers.")
    created_at: Timestamp = Field(
        description="When the document was created in the system; its Helsinki month is the billing month (B-09).",
    )
    voucher_date: Date | None = Field(
        default=None,
        description="The voucher date printed on the document; informational only, never used for billing (B-09).",
    )


class VoucherVoidedV1(_UsageEvent):
    """A voucher was voided; voided in its creation month it does not count (B-11)."""

    message_type: ClassVar[str] = "usage.voucher-voided"

    voucher_id: str = Field(min_length=1, max_length=100, description="Id of the voided document.")
    voided_at: Timestamp = Field(description="When the voucher was voided.")


class PayCalculatedV1(_UsageEvent):
    """Pay was calculated for one person; each distinct person counts once a month (B-12)."""

    message_type: ClassVar[str] = "usage.pay-calculated"

    payslip_id: str = Field(min_length=1, max_length=100, description="Id of the payslip calculated.")
    person_id: str = Field(
        min_length=1,
        max_length=100,
        description="Pseudonymous id of the payee in the environment (never a personal identity code).",
    )
    calculated_at: Timestamp = Field(description="When the pay was calculated; its Helsinki month counts.")


class InvoiceChannel(StrEnum):
    """How an invoice travelled; operator and bank e-invoice channels carry a message fee (B-13)."""

    OPERATOR = "operator"
    BANK = "bank"
    EMAIL = "email"
    PAPER = "paper"
    TYPED_IN = "typed_in"


class _EInvoiceEvent(_UsageEvent):
    voucher_id: str = Field(
        min_length=1,
        max_length=100,
        description="Voucher id of the invoice; it counts as a voucher whatever the channel (B-13).",
    )
    channel: InvoiceChannel = Field(
        description="Channel; `operator` and `bank` are charged per message (B-13)."
    )


class EInvoiceSentV1(_EInvoiceEvent):
    """A sales invoice was sent from the environment."""

    message_type: ClassVar[str] = "usage.einvoice-sent"

    sent_at: Timestamp = Field(description="When the invoice was sent.")


class EInvoiceReceivedV1(_EInvoiceEvent):
    """A purchase invoice was received into the environment."""

    message_type: ClassVar[str] = "usage.einvoice-received"

    received_at: Timestamp = Field(description="When the invoice was received.")


class UserRole(StrEnum):
    """Roles of a Tallennus user; `management_auditor` and `staff_entry` are free (B-16)."""

    MAIN_USER = "main_user"
    CUSTOM = "custom"
    ACCOUNTANT = "accountant"
    MANAGEMENT_AUDITOR = "management_auditor"
    STAFF_ENTRY = "staff_entry"


class UserRolesChangedV1(_UsageEvent):
    """A user's roles in an environment changed; an empty list removes the user (B-16)."""

    message_type: ClassVar[str] = "usage.user-roles-changed"

    user_id: str = Field(min_length=1, max_length=100, description="Id of the user in the environment.")
    roles: list[UserRole] = Field(description="The user's complete set of roles after the change.")
    changed_at: Timestamp = Field(description="When the change took effect.")


class SignatureCompletedV1(_UsageEvent):
    """A document was signed through the Allekirjoitus service."""

    message_type: ClassVar[str] = "usage.signature-completed"

    signature_id: str = Field(min_length=1, max_length=100, description="Id of the signing request.")
    signer_count: int = Field(ge=1, le=1000, description="Number of signers; each signer is charged.")
    completed_at: Timestamp = Field(description="When the last signer signed.")


class HourEntryRecordedV1(_UsageEvent):
    """An employee recorded hours for a customer environment (I-04 payroll, I-07 billable hours)."""

    message_type: ClassVar[str] = "usage.hour-entry-recorded"

    entry_id: str = Field(
        min_length=1,
        max_length=100,
        description="Id of the hour entry; a new event with the same id replaces it.",
    )
    employee_id: str = Field(min_length=1, max_length=100, description="Id of the employee who did the work.")
    service_product_code: str = Field(
        min_length=1,
        max_length=40,
        description="Code of the service product whose hourly rate applies (I-07).",
    )
    work_date: Date = Field(description="The day the work was done; its month is the billing month.")
    hours: Quantity = Field(gt=0, le=24, description="Hours worked, as a decimal string, e.g. `7.5`.")
    billable: bool = Field(description="Billable hours become other charges on the monthly invoice (I-07).")
    recorded_at: Timestamp = Field(description="When the entry was recorded or last changed.")
