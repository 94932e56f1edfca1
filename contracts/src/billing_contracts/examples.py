"""One valid example message per contract, for the AsyncAPI document, docs and tests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TypedDict
from uuid import UUID

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    ApprovingFirm,
    BillingChannel,
    BillingContact,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    DueDateChangeRequestedV1,
    EInvoiceAddress,
    PackageChangeKind,
    PackageChangeRequestedV1,
    PackageCode,
    PayerKind,
    PostalAddress,
    ProductionStartedV1,
    Requester,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from billing_contracts.deadletter import DeadLetterV1, FailureKind
from billing_contracts.invoicing import (
    BillingRunFinishedV1,
    ChangeRequestRefusedV1,
    ContractChangedV1,
    ContractStatus,
    CreditNoteIssuedV1,
    CreditNoteLine,
    InvoiceHeldV1,
    InvoiceIssuedV1,
    InvoiceLine,
    RefundRecordedV1,
    VatTotal,
)
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFigures, UsageFinalizedV1
from billing_contracts.partners import (
    AccountingFirmDetailsChangedV1,
    AccountingFirmRegisteredV1,
    AuthorizationPart,
    CommissionInvoice,
    CommissionLineKind,
    CommissionStatementIssuedV1,
    CooperationAgreementEndedV1,
    ExamKind,
    ExamResultWithdrawnV1,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    ExpertJoinedFirmV1,
    ExpertLeftFirmV1,
    ExpertSoftware,
    PartnerTier,
    PartnerTierChangedV1,
)
from billing_contracts.procountor import (
    CustomerChangedInProcountorV1,
    DeliveryStatus,
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    PaymentReceivedV1,
)
from billing_contracts.usage import (
    DocumentKind,
    EInvoiceReceivedV1,
    EInvoiceSentV1,
    HourEntryRecordedV1,
    InvoiceChannel,
    PayCalculatedV1,
    SignatureCompletedV1,
    UserRole,
    UserRolesChangedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)

_HELSINKI = dt.timezone(dt.timedelta(hours=3))  # EEST; examples need a fixed offset, not tzdata
_AT = dt.datetime(2026, 10, 5, 9, 30, tzinfo=_HELSINKI)
_ENV = "env-1001"
_PAYER = "payer-1001"
_FIRM = "firm-77"
_ADDRESS = PostalAddress(street="Keilaranta 1", postal_code="02150", city="Espoo")
_EINVOICE = EInvoiceAddress(address="003720774740", operator="003723327487")
_MAIN_USER = Requester(person_name="Maija Meikäläinen", user_id="u-42", role="main_user")


class _Envelope(TypedDict):
    event_id: UUID
    occurred_at: dt.datetime
    producer: str


def _event_id(n: int) -> UUID:
    return UUID(int=0x0B9A7D5E_7F4B_4A4E_9F43_000000000000 + n)


def _envelope(n: int, producer: str = "crm") -> _Envelope:
    return {"event_id": _event_id(n), "occurred_at": _AT, "producer": producer}


def _line(n: int = 1) -> InvoiceLine:
    return InvoiceLine(
        line_no=n,
        environment_id=_ENV,
        product_code="KEVYT-MONTHLY",
        description="Procountor Kevyt, kuukausimaksu 9/2026",
        period_start=dt.date(2026, 9, 1),
        period_end=dt.date(2026, 9, 30),
        quantity=Decimal("1"),
        unit="month",
        unit_price=Decimal("19.90"),
        net=Decimal("19.90"),
        vat_rate=Decimal("25.5"),
    )


_VAT = VatTotal(vat_rate=Decimal("25.5"), net=Decimal("19.90"), vat=Decimal("5.07"))
_USAGE = UsageFigures(
    vouchers=13,
    payees=2,
    einvoices_sent=4,
    einvoices_received=3,
    billable_users=0,
    signatures=0,
    billable_hours={"KIRJANPITO-H": "2.5"},
)

EXAMPLES: tuple[Message, ...] = (
    VoucherCreatedV1(
        **_envelope(1, "procountor-env-events"),
        environment_id=_ENV,
        voucher_id="V-2026-000123",
        document_kind=DocumentKind.SALES_INVOICE,
        created_at=_AT,
        voucher_date=dt.date(2026, 9, 30),
    ),
    VoucherVoidedV1(
        **_envelope(2, "procountor-env-events"),
        environment_id=_ENV,
        voucher_id="V-2026-000123",
        voided_at=_AT,
    ),
    PayCalculatedV1(
        **_envelope(3, "procountor-env-events"),
        environment_id=_ENV,
        payslip_id="P-88",
        person_id="person-5",
        calculated_at=_AT,
    ),
    EInvoiceSentV1(
        **_envelope(4, "procountor-env-events"),
        environment_id=_ENV,
        voucher_id="V-2026-000124",
        channel=InvoiceChannel.OPERATOR,
        sent_at=_AT,
    ),
    EInvoiceReceivedV1(
        **_envelope(5, "procountor-env-events"),
        environment_id=_ENV,
        voucher_id="V-2026-000125",
        channel=InvoiceChannel.BANK,
        received_at=_AT,
    ),
    UserRolesChangedV1(
        **_envelope(6, "procountor-env-events"),
        environment_id=_ENV,
        user_id="u-7",
        roles=[UserRole.ACCOUNTANT],
        changed_at=_AT,
    ),
    SignatureCompletedV1(
        **_envelope(7, "procountor-env-events"),
        environment_id=_ENV,
        signature_id="S-9",
        signer_count=2,
        completed_at=_AT,
    ),
    HourEntryRecordedV1(
        **_envelope(8, "erp"),
        environment_id=_ENV,
        entry_id="H-1",
        employee_id="emp-3",
        service_product_code="KIRJANPITO-H",
        work_date=dt.date(2026, 10, 2),
        hours=Decimal("2.5"),
        billable=True,
        recorded_at=_AT,
    ),
    ContractSignedV1(
        **_envelope(9),
        environment_id=_ENV,
        business_id="2077474-0",
        company_name="Esimerkki Oy",
        package=PackageCode.KEVYT,
        production_date=dt.date(2026, 10, 15),
        payer=PayerKind.COMPANY,
        accounting_firm_id=_FIRM,
        reseller_partner_id=_FIRM,
        billing_address=_ADDRESS,
        billing_channel=BillingChannel.EINVOICE,
        einvoice_address=_EINVOICE,
    ),
    ProductionStartedV1(**_envelope(10), environment_id=_ENV, production_date=dt.date(2026, 10, 15)),
    PackageChangeRequestedV1(
        **_envelope(11),
        environment_id=_ENV,
        requested_at=_AT,
        change_kind=PackageChangeKind.PACKAGE_SIZE,
        new_package=PackageCode.JOUSTO,
        previous_package=PackageCode.KEVYT,
        requested_by=_MAIN_USER,
    ),
    AccountingFirmChangeRequestedV1(
        **_envelope(12),
        environment_id=_ENV,
        requested_at=_AT,
        new_accounting_firm_id="firm-88",
        new_accounting_firm_business_id="1572860-0",
        requested_by=_MAIN_USER,
    ),
    TerminationNoticeGivenV1(
        **_envelope(13),
        environment_id=_ENV,
        notice_given_at=_AT,
        reason="Yritystoiminta päättyy",
        requested_by=Requester(person_name="Matti Meikäläinen", is_signatory=True),
    ),
    BusinessIdChangeRequestedV1(
        **_envelope(14),
        environment_id=_ENV,
        requested_at=_AT,
        new_business_id="2345678-0",
        new_environment_id="env-2002",
        new_company_name="Esimerkki Oyj",
        requested_by=Requester(person_name="Matti Meikäläinen", is_signatory=True),
    ),
    TallennusFirmChangeApprovedV1(
        **_envelope(15),
        environment_id=_ENV,
        approving_firm=ApprovingFirm.NEW,
        old_accounting_firm_id=_FIRM,
        new_accounting_firm_id="firm-88",
        approved_at=_AT,
        new_package=PackageCode.TALLENNUS,
        approved_by=Requester(person_name="Liisa Tilitoimisto", is_signatory=True),
    ),
    BillingContactChangeRequestedV1(
        **_envelope(16),
        environment_id=_ENV,
        requested_at=_AT,
        new_contact=BillingContact(
            name="Maija Meikäläinen", phone="+358401234567", email="maija@example.com"
        ),
        requested_by=_MAIN_USER,
    ),
    CompanyNameChangeNoticeGivenV1(
        **_envelope(17),
        environment_id=_ENV,
        notice_given_at=_AT,
        old_company_name="Esimerkki Oy",
        new_company_name="Esimerkki ja Poika Oy",
        requested_by=_MAIN_USER,
    ),
    AdvanceBillingRequestedV1(
        **_envelope(18),
        environment_id=_ENV,
        requested_at=_AT,
        from_month="2027-01",
        to_month="2027-12",
        requested_by=_MAIN_USER,
    ),
    DueDateChangeRequestedV1(
        **_envelope(19, "support-desk"),
        invoice_id="inv-5001",
        invoice_number="100231",
        new_due_date=dt.date(2026, 10, 31),
        reason="Asiakas pyysi lisäaikaa puhelimitse",
        changed_by="support-anna",
        requested_at=_AT,
        requested_by=_MAIN_USER,
    ),
    UsageFinalizedV1(**_envelope(20, "metering"), environment_id=_ENV, month="2026-09", usage=_USAGE),
    UsageAdjustedV1(
        **_envelope(21, "metering"),
        environment_id=_ENV,
        month="2026-09",
        adjustment_no=1,
        usage=_USAGE.model_copy(update={"vouchers": 14}),
        previous=_USAGE,
    ),
    MonthClosedV1(**_envelope(22, "metering"), month="2026-09", environment_count=1250),
    ContractChangedV1(
        **_envelope(23, "invoicing"),
        contract_id="c-1001",
        environment_id=_ENV,
        business_id="2077474-0",
        company_name="Esimerkki Oy",
        status=ContractStatus.ACTIVE,
        package=PackageCode.KEVYT,
        production_date=dt.date(2026, 10, 15),
        accounting_firm_id=_FIRM,
        reseller_partner_id=_FIRM,
        change="package_changed",
    ),
    InvoiceIssuedV1(
        **_envelope(24, "invoicing"),
        invoice_id="inv-5001",
        invoice_number="100231",
        reference_number="1002311",
        payer_id=_PAYER,
        payer_kind=PayerKind.COMPANY,
        payer_business_id="2077474-0",
        payer_name="Esimerkki Oy",
        billing_address=_ADDRESS,
        billing_channel=BillingChannel.EINVOICE,
        einvoice_address=_EINVOICE,
        billing_period="2026-09",
        invoice_date=dt.date(2026, 10, 1),
        due_date=dt.date(2026, 10, 11),
        lines=[_line()],
        vat_totals=[_VAT],
        total_net=Decimal("19.90"),
        total_vat=Decimal("5.07"),
        total_gross=Decimal("24.97"),
        software_net_by_reseller={_FIRM: Decimal("19.90")},
    ),
    InvoiceHeldV1(
        **_envelope(25, "invoicing"),
        payer_id=_PAYER,
        payer_business_id="2077474-0",
        billing_period="2026-09",
        held_net=Decimal("4.50"),
        accumulated_held_net=Decimal("7.80"),
        lines=[
            _line().model_copy(
                update={"product_code": "EINVOICE-OUT", "unit": "message", "net": Decimal("4.50")}
            )
        ],
    ),
    CreditNoteIssuedV1(
        **_envelope(26, "invoicing"),
        credit_note_id="cn-17",
        credit_note_number="100240",
        reference_number="1002405",
        credited_invoice_id="inv-5001",
        credited_invoice_number="100231",
        payer_id=_PAYER,
        payer_business_id="2077474-0",
        payer_name="Esimerkki Oy",
        credit_date=dt.date(2026, 10, 8),
        reason="Kuukausimaksu laskutettu kahdesti",
        lines=[
            CreditNoteLine(
                line_no=1,
                credited_line_no=1,
                environment_id=_ENV,
                product_code="KEVYT-MONTHLY",
                description="Hyvitys: Procountor Kevyt, kuukausimaksu 9/2026",
                period_start=dt.date(2026, 9, 1),
                period_end=dt.date(2026, 9, 30),
                quantity=Decimal("1"),
                unit="month",
                unit_price=Decimal("19.90"),
                net=Decimal("19.90"),
                vat_rate=Decimal("25.5"),
            )
        ],
        vat_totals=[_VAT],
        total_net=Decimal("19.90"),
        total_vat=Decimal("5.07"),
        total_gross=Decimal("24.97"),
        software_net_by_reseller={_FIRM: Decimal("19.90")},
    ),
    RefundRecordedV1(
        **_envelope(27, "invoicing"),
        refund_id="rf-3",
        payer_id=_PAYER,
        payer_business_id="2077474-0",
        amount=Decimal("24.97"),
        payment_date=dt.date(2026, 10, 12),
        payment_event_id=_event_id(36),
        procountor_invoice_id="PC-778899",
        reason="no open invoice",
    ),
    ChangeRequestRefusedV1(
        **_envelope(28, "invoicing"),
        key=_ENV,
        environment_id=_ENV,
        refused_event_id=_event_id(18),
        refused_message_type="contracts.advance-billing-requested",
        rule="B-04",
        reason="Laskutus tapahtuu aina jälkikäteen toteutuneen käytön mukaan.",
    ),
    BillingRunFinishedV1(
        **_envelope(39, "invoicing"),
        run_id="run-2026-09",
        billing_period="2026-09",
        run_date=dt.date(2026, 10, 1),
        attempt=1,
        status="completed",
        invoices_issued=88384,
        held=2134,
        failed=0,
        credit_notes_issued=12,
    ),
    AccountingFirmRegisteredV1(
        **_envelope(29, "partner-crm"),
        firm_id=_FIRM,
        business_id="0737546-2",
        firm_name="Tilitoimisto Esimerkki Oy",
        agreement_signed_on=dt.date(2026, 1, 15),
    ),
    CooperationAgreementEndedV1(
        **_envelope(40, "partner-crm"),
        firm_id=_FIRM,
        ended_on=dt.date(2027, 1, 1),
        reason="The firm gave notice of the cooperation agreement.",
    ),
    AccountingFirmDetailsChangedV1(
        **_envelope(41, "partner-crm"),
        firm_id=_FIRM,
        firm_name="Tilitoimisto Esimerkki Oy",
        business_id="0737546-2",
        city="Tampere",
        website="https://tilitoimisto-esimerkki.fi",
        presentation="Sähköisen taloushallinnon tilitoimisto Tampereella vuodesta 1998.",
        extended_presentation=None,
        software=[ExpertSoftware.PROCOUNTOR],
    ),
    ExpertCertifiedV1(
        **_envelope(30, "training"),
        firm_id=_FIRM,
        expert_id="expert-12",
        software=ExpertSoftware.PROCOUNTOR,
        passed_on=dt.date(2026, 9, 20),
    ),
    ExpertAuthorizationPassedV1(
        **_envelope(31, "training"),
        firm_id=_FIRM,
        expert_id="expert-12",
        software=ExpertSoftware.PROCOUNTOR,
        part=AuthorizationPart.ONLINE,
        passed_on=dt.date(2026, 9, 27),
    ),
    ExamResultWithdrawnV1(
        **_envelope(42, "training"),
        firm_id=_FIRM,
        expert_id="expert-12",
        software=ExpertSoftware.PROCOUNTOR,
        exam=ExamKind.CERTIFICATION,
        withdrawn_on=dt.date(2026, 10, 2),
        reason="Granted in error: the exam session was void.",
    ),
    ExpertJoinedFirmV1(
        **_envelope(43, "training"),
        firm_id=_FIRM,
        expert_id="expert-31",
        joined_on=dt.date(2026, 10, 1),
    ),
    ExpertLeftFirmV1(
        **_envelope(44, "training"),
        firm_id=_FIRM,
        expert_id="expert-12",
        left_on=dt.date(2026, 12, 1),
    ),
    PartnerTierChangedV1(
        **_envelope(32, "partners"),
        firm_id=_FIRM,
        old_tier=PartnerTier.SILVER,
        new_tier=PartnerTier.GOLD,
        reason="end customers rose to 25 with one certified expert",
        end_customers=25,
        certified_experts=1,
        authorized_experts=0,
        effective_month="2026-10",
    ),
    CommissionStatementIssuedV1(
        **_envelope(33, "partners"),
        statement_id="cs-2026-09-firm-77",
        partner_id=_FIRM,
        month="2026-09",
        invoices=[
            CommissionInvoice(
                invoice_id="inv-5001",
                invoice_number="100231",
                payer_business_id="2077474-0",
                invoice_date=dt.date(2026, 10, 1),
                software_net=Decimal("19.90"),
                kind=CommissionLineKind.INVOICE,
                billing_period="2026-09",
                label="Lasku 100231",
            ),
            CommissionInvoice(
                invoice_id="CN-100240",
                invoice_number="100240",
                payer_business_id="2077474-0",
                invoice_date=dt.date(2026, 9, 28),
                software_net=Decimal("-4.50"),
                kind=CommissionLineKind.CREDIT_NOTE,
                credited_invoice_number="100112",
                label="Hyvityslasku 100240 (lasku 100112)",
            ),
        ],
        software_net_total=Decimal("15.40"),
        commission_rate_percent=Decimal("10"),
        commission_amount=Decimal("1.54"),
        issued_on=dt.date(2026, 10, 1),
    ),
    CustomerChangedInProcountorV1(
        **_envelope(34, "procountor-sync"),
        payer_id=_PAYER,
        procountor_customer_id="PC-C-4411",
        business_id="2077474-0",
        changed_at=_AT,
        company_name="Esimerkki Oy",
        billing_address=_ADDRESS,
        billing_channel=BillingChannel.EINVOICE,
        einvoice_address=_EINVOICE,
    ),
    InvoiceDeliveredV1(
        **_envelope(35, "procountor-sync"),
        invoice_id="inv-5001",
        procountor_invoice_id="PC-778899",
        status=DeliveryStatus.SENT,
        delivered_at=_AT,
    ),
    InvoiceDeliveryFailedV1(
        **_envelope(37, "procountor-sync"),
        invoice_id="inv-5002",
        reason="Procountor API 400: invalid e-invoice operator",
        retryable=False,
        attempts=1,
        failed_at=_AT,
    ),
    PaymentReceivedV1(
        **_envelope(36, "procountor-sync"),
        procountor_payment_id="PC-P-9001",
        procountor_invoice_id="PC-778899",
        invoice_id="inv-5001",
        payer_business_id="2077474-0",
        amount=Decimal("24.97"),
        payment_date=dt.date(2026, 10, 10),
        reference_number="1002311",
    ),
    DeadLetterV1(
        **_envelope(38, "invoicing"),
        consumer_group="invoicing",
        original_topic="contracts.contract-signed.v1",
        original_partition=3,
        original_offset=1207,
        original_key_b64="ZW52LTEwMDE=",
        original_value_b64="eyJldmVudF9pZCI6ICJub3QtYS11dWlkIn0=",
        original_event_id="not-a-uuid",
        failure=FailureKind.SCHEMA_VIOLATION,
        reason="event_id: Input should be a valid UUID",
    ),
)


def example_of(contract: type[Message]) -> Message:
    """The example message of one contract."""
    for message in EXAMPLES:
        if type(message) is contract:
            return message
    raise KeyError(f"no example of {contract.__name__}")
