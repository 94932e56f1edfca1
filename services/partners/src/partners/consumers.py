"""Partners' Kafka intake: each subscription decodes its topics and hands the batch to one use case."""

from __future__ import annotations

from billing_contracts.invoicing import ContractChangedV1
from billing_contracts.registry import topic_for
from partners.domain import BenefitBook
from partners.service import BILLING_INPUTS, PROGRAM_INPUTS, BillingIntake, ContractIntake, ProgramIntake
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost


def subscribe_consumers(host: ServiceHost, clock: Clock, benefits: BenefitBook) -> None:
    """The three intakes, each its own consumer group, so that one's backlog never delays another."""
    # P-02, P-04, P-09: the partner managers' CRM and the training platform.
    host.consume({topic_for(c): c for c in PROGRAM_INPUTS}, ProgramIntake(clock), group="partners-program")
    # P-03: end customers from invoicing's contract state.
    host.consume(
        {topic_for(ContractChangedV1): ContractChangedV1}, ContractIntake(clock), group="partners-contracts"
    )
    # P-08: invoices, credit notes and the end of each month's billing run.
    host.consume(
        {topic_for(c): c for c in BILLING_INPUTS}, BillingIntake(clock, benefits), group="partners-billing"
    )
