"""Procountor-sync's Kafka intake: decode, one use case (I-01, I-02, I-04, B-06, B-23)."""

from __future__ import annotations

from billing_contracts.base import Message
from billing_contracts.invoicing import (
    ContractChangedV1,
    CreditNoteIssuedV1,
    InvoiceDueDateMovedV1,
    InvoiceIssuedV1,
    RefundRecordedV1,
)
from billing_contracts.registry import topic_for
from billing_contracts.usage import HourEntryRecordedV1
from procountor_sync.service import DeliveryIntake, HourEntryIntake
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost

#: What becomes a delivery to Procountor.
DELIVERED: tuple[type[Message], ...] = (
    InvoiceIssuedV1,
    CreditNoteIssuedV1,
    InvoiceDueDateMovedV1,
    RefundRecordedV1,
    ContractChangedV1,  # a payer's billing data changed on our side: a customer update (I-02)
)


def subscribe(host: ServiceHost, clock: Clock) -> None:
    host.consume(
        {topic_for(c): c for c in DELIVERED}, DeliveryIntake(clock), group="procountor-sync-deliveries"
    )
    host.consume(
        {topic_for(HourEntryRecordedV1): HourEntryRecordedV1},
        HourEntryIntake(),
        group="procountor-sync-hours",
    )
