"""The one registry of topics: which contract travels on which topic, who produces and consumes it."""

from __future__ import annotations

from dataclasses import dataclass

from billing_contracts.base import Message
from billing_contracts.contracts import (
    AccountingFirmChangeRequestedV1,
    AdvanceBillingRequestedV1,
    BillingContactChangeRequestedV1,
    BusinessIdChangeRequestedV1,
    CompanyNameChangeNoticeGivenV1,
    ContractSignedV1,
    DueDateChangeRequestedV1,
    PackageChangeRequestedV1,
    ProductionStartedV1,
    TallennusFirmChangeApprovedV1,
    TerminationNoticeGivenV1,
)
from billing_contracts.deadletter import DeadLetterV1
from billing_contracts.invoicing import (
    ChangeRequestRefusedV1,
    ContractChangedV1,
    CreditNoteIssuedV1,
    InvoiceHeldV1,
    InvoiceIssuedV1,
    RefundRecordedV1,
)
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.partners import (
    AccountingFirmRegisteredV1,
    CommissionStatementIssuedV1,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    PartnerTierChangedV1,
)
from billing_contracts.procountor import (
    CustomerChangedInProcountorV1,
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    PaymentReceivedV1,
)
from billing_contracts.usage import (
    EInvoiceReceivedV1,
    EInvoiceSentV1,
    HourEntryRecordedV1,
    PayCalculatedV1,
    SignatureCompletedV1,
    UserRolesChangedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)

SERVICES = ("metering", "invoicing", "partners", "procountor-sync")


@dataclass(frozen=True)
class TopicSpec:
    """A topic, the one contract it carries, and its parties."""

    name: str
    contract: type[Message]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int = 6
    retention_days: int = 30
    description: str = ""


def _topic(
    contract: type[Message], producers: tuple[str, ...], consumers: tuple[str, ...], **kw: int
) -> TopicSpec:
    name = f"{contract.message_type}.v{contract.version()}"
    doc = (contract.__doc__ or "").strip().splitlines()[0]
    return TopicSpec(name, contract, producers, consumers, description=doc, **kw)


#: A party outside this product: customer environments, CRM, support tools, training systems.
_EXTERNAL = ("external",)

TOPICS: tuple[TopicSpec, ...] = (
    _topic(VoucherCreatedV1, _EXTERNAL, ("metering",), partitions=12),
    _topic(VoucherVoidedV1, _EXTERNAL, ("metering",), partitions=12),
    _topic(PayCalculatedV1, _EXTERNAL, ("metering",), partitions=12),
    _topic(EInvoiceSentV1, _EXTERNAL, ("metering",), partitions=12),
    _topic(EInvoiceReceivedV1, _EXTERNAL, ("metering",), partitions=12),
    _topic(UserRolesChangedV1, _EXTERNAL, ("metering",)),
    _topic(SignatureCompletedV1, _EXTERNAL, ("metering",)),
    _topic(HourEntryRecordedV1, _EXTERNAL, ("metering",)),
    # Contract lifecycle commands (sales, CRM, support) into invoicing.
    _topic(ContractSignedV1, _EXTERNAL, ("invoicing",)),
    _topic(ProductionStartedV1, _EXTERNAL, ("invoicing",)),
    _topic(PackageChangeRequestedV1, _EXTERNAL, ("invoicing",)),
    _topic(AccountingFirmChangeRequestedV1, _EXTERNAL, ("invoicing",)),
    _topic(TerminationNoticeGivenV1, _EXTERNAL, ("invoicing",)),
    _topic(BusinessIdChangeRequestedV1, _EXTERNAL, ("invoicing",)),
    _topic(TallennusFirmChangeApprovedV1, _EXTERNAL, ("invoicing",)),
    _topic(BillingContactChangeRequestedV1, _EXTERNAL, ("invoicing",)),
    _topic(CompanyNameChangeNoticeGivenV1, _EXTERNAL, ("invoicing",)),
    _topic(AdvanceBillingRequestedV1, _EXTERNAL, ("invoicing",)),
    _topic(DueDateChangeRequestedV1, _EXTERNAL, ("invoicing",)),
    # Metering output.
    _topic(UsageFinalizedV1, ("metering",), ("invoicing",)),
    _topic(UsageAdjustedV1, ("metering",), ("invoicing",)),
    _topic(MonthClosedV1, ("metering",), ("invoicing",), partitions=1),
    # Invoicing output.
    _topic(ContractChangedV1, ("invoicing",), ("partners",)),
    _topic(InvoiceIssuedV1, ("invoicing",), ("procountor-sync", "partners")),
    _topic(InvoiceHeldV1, ("invoicing",), _EXTERNAL),
    _topic(CreditNoteIssuedV1, ("invoicing",), ("procountor-sync", "partners")),
    _topic(RefundRecordedV1, ("invoicing",), ("procountor-sync",)),
    _topic(ChangeRequestRefusedV1, ("invoicing",), _EXTERNAL),
    # Partner program: facts about firms and experts in, tiers and commissions out.
    _topic(AccountingFirmRegisteredV1, _EXTERNAL, ("partners",)),
    _topic(ExpertCertifiedV1, _EXTERNAL, ("partners",)),
    _topic(ExpertAuthorizationPassedV1, _EXTERNAL, ("partners",)),
    _topic(PartnerTierChangedV1, ("partners",), ("invoicing", "external")),
    _topic(CommissionStatementIssuedV1, ("partners",), _EXTERNAL),
    # Procountor sync output.
    _topic(CustomerChangedInProcountorV1, ("procountor-sync",), ("invoicing",)),
    _topic(InvoiceDeliveredV1, ("procountor-sync",), ("invoicing",)),
    _topic(InvoiceDeliveryFailedV1, ("procountor-sync",), ("invoicing",)),
    _topic(PaymentReceivedV1, ("procountor-sync",), ("invoicing",)),
)

DEAD_LETTER_CONTRACT = DeadLetterV1


def dead_letter_topic(service: str) -> str:
    """Dead-letter topic of one service, e.g. `metering.dead-letter.v1`."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return f"{service}.{DeadLetterV1.message_type}.v{DeadLetterV1.version()}"


def all_topic_names() -> list[str]:
    """Every topic, dead-letter topics included, sorted."""
    return sorted([t.name for t in TOPICS] + [dead_letter_topic(s) for s in SERVICES])


def topic_for(contract: type[Message]) -> str:
    """The topic that carries `contract`."""
    name = _TOPIC_OF.get(contract)
    if name is None:
        raise KeyError(f"{contract.__name__} is not in the topic registry")
    return name


_TOPIC_OF: dict[type[Message], str] = {spec.contract: spec.name for spec in TOPICS}


def consumed_by(service: str) -> list[TopicSpec]:
    """Topics a service subscribes to."""
    return [t for t in TOPICS if service in t.consumers]
