"""Partners' Kafka intake: each subscription decodes its topics and hands the batch to one use case."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from billing_contracts.base import Message
from billing_contracts.invoicing import ContractChangedV1
from billing_contracts.registry import topic_for
from partners.domain import BenefitBook
from partners.service import (
    BILLING_INPUTS,
    DEFAULT_PARKING,
    PROGRAM_GROUP,
    PROGRAM_INPUTS,
    follow_contracts,
    record_billing_documents,
    record_program_facts,
)
from service_runtime.clock import Clock
from service_runtime.consumer import IdempotentConsumer, Rejection
from service_runtime.database import Session
from service_runtime.host import ServiceHost


class ProgramIntake:
    """The Kafka intake of the partner-program topics: `record_program_facts`. An input refused for what
    is not known yet is parked, not dead-lettered (see there); only final refusals become dead letters."""

    def __init__(self, clock: Clock, parking: dt.timedelta = DEFAULT_PARKING) -> None:
        self._clock = clock
        self._parking = parking

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        refused = await record_program_facts(session, events, self._clock, parking=self._parking)
        return [r.rejection() for r in refused]


class ContractIntake:
    """The Kafka intake of `invoicing.contract-changed.v1` (P-03)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[ContractChangedV1]) -> list[Rejection]:
        await follow_contracts(session, events, self._clock)
        return []


class BillingIntake:
    """The Kafka intake of invoicing's invoices, credit notes and run ends (P-08)."""

    def __init__(self, clock: Clock, benefits: BenefitBook) -> None:
        self._clock = clock
        self._benefits = benefits

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        await record_billing_documents(session, events, self._clock, self._benefits)
        return []


def subscribe_consumers(
    host: ServiceHost,
    clock: Clock,
    benefits: BenefitBook,
    *,
    parking: dt.timedelta = DEFAULT_PARKING,
    contract_consumers: int = 1,
) -> IdempotentConsumer[Any]:
    """The three intakes, each its own consumer group, so that one's backlog never delays another.

    Returns the program intake's consumer: parked inputs that expire are dead-lettered through it.
    """
    # P-02, P-04, P-09: the partner managers' CRM and the training platform.
    program = host.consume(
        {topic_for(c): c for c in PROGRAM_INPUTS}, ProgramIntake(clock, parking), group=PROGRAM_GROUP
    )
    # P-03: end customers from invoicing's contract state.
    host.consume(
        {topic_for(ContractChangedV1): ContractChangedV1},
        ContractIntake(clock),
        group="partners-contracts",
        instances=contract_consumers,
    )
    # P-08: invoices, credit notes and the end of each month's billing run.
    host.consume(
        {topic_for(c): c for c in BILLING_INPUTS}, BillingIntake(clock, benefits), group="partners-billing"
    )
    return program
