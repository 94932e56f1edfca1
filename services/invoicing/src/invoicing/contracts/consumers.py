"""The contracts' Kafka intake: contract commands from sales, CRM and support systems, and customers
changed in Procountor. Thin: each message goes to one use case."""

from __future__ import annotations

from collections.abc import Sequence

from billing_contracts.base import Message
from billing_contracts.procountor import CustomerChangedInProcountorV1
from billing_contracts.registry import topic_for
from invoicing import tables as t
from invoicing.contracts.domain import ChangeRefusedError, from_kafka
from invoicing.contracts.service import (
    ContractNotFoundError,
    Refused,
    handle_contract_command,
    refusal_message,
)
from invoicing.contracts.upkeep import apply_procountor_customer_change
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.database import Session
from service_runtime.outbox import enqueue


class ContractIntake:
    """Batch use case for contract commands from sales, CRM and support systems.

    A refused command publishes `ChangeRequestRefusedV1` for the requester and is rejected, so
    that it is also dead-lettered with the reason; a command for an unknown environment is
    rejected likewise (it may have overtaken its `ContractSignedV1` and can be replayed).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        rejections = []
        for event in events:
            try:
                # Kafka commands carry no token: the topic, which only the CRM's KafkaUser may
                # write, is the system that asserts the requester.
                source = from_kafka(topic_for(type(event)))
                outcome = await handle_contract_command(session, event, self._clock, source=source)
            except ContractNotFoundError as exc:
                outcome = Refused(contract_id=None, rule="B-01", reason=str(exc))
            if isinstance(outcome, Refused):
                await enqueue(
                    session,
                    t.runtime_tables.outbox,
                    [refusal_message(event, outcome, self._clock)],
                    self._clock,
                )
                rejections.append(Rejection(event.event_id, f"{outcome.rule}: {outcome.reason}"))
        return rejections


class ProcountorCustomerIntake:
    """Batch use case for customers changed in Procountor (procountor-sync, I-02)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(
        self, session: Session, events: Sequence[CustomerChangedInProcountorV1]
    ) -> list[Rejection]:
        rejections = []
        for event in events:
            try:
                async with session.begin_nested():
                    await apply_procountor_customer_change(session, event, self._clock)
            except ChangeRefusedError as exc:
                rejections.append(Rejection(event.event_id, f"{exc.rule}: {exc.reason}"))
        return rejections
