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
    BillingRunFinishedV1,
    ChangeRequestRefusedV1,
    ContractChangedV1,
    CreditNoteIssuedV1,
    InvoiceDueDateMovedV1,
    InvoiceHeldV1,
    InvoiceIssuedV1,
    RefundRecordedV1,
)
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.partners import (
    AccountingFirmDetailsChangedV1,
    AccountingFirmRegisteredV1,
    CommissionStatementIssuedV1,
    CooperationAgreementEndedV1,
    ExamResultWithdrawnV1,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    ExpertJoinedFirmV1,
    ExpertLeftFirmV1,
    PartnerTierChangedV1,
)
from billing_contracts.procountor import (
    CustomerChangedInProcountorV1,
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    InvoicePaymentStatusChangedV1,
    InvoiceTotalsMismatchedV1,
    PaymentReceivedV1,
    ProductChangedInProcountorV1,
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

KIB = 1024
#: One fact about one aggregate (a voucher, a command, a tier): a few hundred bytes in practice.
FACT_MAX_BYTES = 64 * KIB
#: A whole document (an invoice with a line per environment and product, a statement): what
#: Kafka accepts by default (`max.message.bytes` 1 MiB).
DOCUMENT_MAX_BYTES = 1024 * KIB
#: A dead letter: the consumer builds it to fit (the original is truncated, with its size and hash).
DEAD_LETTER_MAX_BYTES = 1024 * KIB
#: Record overhead the broker counts on top of key + value + headers (batch and record headers);
#: topics and producers allow this much more than the limits above, which are what we check.
RECORD_OVERHEAD_BYTES = 16 * KIB


@dataclass(frozen=True)
class TopicSpec:
    """A topic, the one contract it carries, and its parties.

    `max_message_bytes` is the largest record (key + value + headers) accepted on the topic:
    producers check it before writing (the outbox refuses a larger message), consumers
    dead-letter a larger record without reading it, and the topic's `max.message.bytes` is set
    a little above it.
    """

    name: str
    contract: type[Message]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int = 6
    retention_days: int = 30
    description: str = ""
    max_message_bytes: int = FACT_MAX_BYTES


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
    _topic(HourEntryRecordedV1, _EXTERNAL, ("metering", "procountor-sync")),
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
    _topic(ContractChangedV1, ("invoicing",), ("partners", "procountor-sync")),
    _topic(
        InvoiceIssuedV1,
        ("invoicing",),
        ("procountor-sync", "partners"),
        max_message_bytes=DOCUMENT_MAX_BYTES,
    ),
    _topic(InvoiceHeldV1, ("invoicing",), _EXTERNAL, max_message_bytes=DOCUMENT_MAX_BYTES),
    _topic(
        CreditNoteIssuedV1,
        ("invoicing",),
        ("procountor-sync", "partners"),
        max_message_bytes=DOCUMENT_MAX_BYTES,
    ),
    _topic(RefundRecordedV1, ("invoicing",), ("procountor-sync",)),
    _topic(InvoiceDueDateMovedV1, ("invoicing",), ("procountor-sync",)),
    _topic(ChangeRequestRefusedV1, ("invoicing",), _EXTERNAL),
    _topic(BillingRunFinishedV1, ("invoicing",), ("partners",), partitions=1),
    # Partner program: facts about firms and experts in, tiers and commissions out.
    # The partner managers' CRM (firms, agreements, directory data) and the training platform
    # (exam results, people joining and leaving firms); keyed by firm, so a firm's facts stay in order.
    _topic(AccountingFirmRegisteredV1, _EXTERNAL, ("partners",)),
    _topic(CooperationAgreementEndedV1, _EXTERNAL, ("partners",)),
    _topic(AccountingFirmDetailsChangedV1, _EXTERNAL, ("partners",)),
    _topic(ExpertCertifiedV1, _EXTERNAL, ("partners",)),
    _topic(ExpertAuthorizationPassedV1, _EXTERNAL, ("partners",)),
    _topic(ExamResultWithdrawnV1, _EXTERNAL, ("partners",)),
    _topic(ExpertJoinedFirmV1, _EXTERNAL, ("partners",)),
    _topic(ExpertLeftFirmV1, _EXTERNAL, ("partners",)),
    _topic(PartnerTierChangedV1, ("partners",), ("invoicing", "external")),
    _topic(CommissionStatementIssuedV1, ("partners",), _EXTERNAL, max_message_bytes=DOCUMENT_MAX_BYTES),
    # Procountor sync output.
    _topic(CustomerChangedInProcountorV1, ("procountor-sync",), ("invoicing",)),
    _topic(InvoiceDeliveredV1, ("procountor-sync",), ("invoicing",)),
    _topic(InvoiceDeliveryFailedV1, ("procountor-sync",), ("invoicing",)),
    _topic(PaymentReceivedV1, ("procountor-sync",), ("invoicing",)),
    _topic(InvoicePaymentStatusChangedV1, ("procountor-sync",), ("invoicing",)),
    _topic(InvoiceTotalsMismatchedV1, ("procountor-sync",), _EXTERNAL),
    # For the price-list owners (people and their tools): never applied to prices by itself (B-07).
    _topic(ProductChangedInProcountorV1, ("procountor-sync",), _EXTERNAL),
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


def max_message_bytes(topic: str) -> int:
    """Largest record (key + value + headers) accepted on `topic`; dead-letter topics included.

    A topic the registry does not know gets the smallest limit.
    """
    if topic in _DEAD_LETTER_TOPICS:
        return DEAD_LETTER_MAX_BYTES
    spec = _SPEC_OF.get(topic)
    return spec.max_message_bytes if spec is not None else FACT_MAX_BYTES


def largest_message_bytes() -> int:
    """The largest limit of any topic: what a producer's maximum request must allow."""
    return max([DEAD_LETTER_MAX_BYTES, *(t.max_message_bytes for t in TOPICS)])


def topic_for(contract: type[Message]) -> str:
    """The topic that carries `contract`."""
    name = _TOPIC_OF.get(contract)
    if name is None:
        raise KeyError(f"{contract.__name__} is not in the topic registry")
    return name


_TOPIC_OF: dict[type[Message], str] = {spec.contract: spec.name for spec in TOPICS}
_SPEC_OF: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}
_DEAD_LETTER_TOPICS = frozenset(dead_letter_topic(s) for s in SERVICES)


def consumed_by(service: str) -> list[TopicSpec]:
    """Topics a service subscribes to."""
    return [t for t in TOPICS if service in t.consumers]
