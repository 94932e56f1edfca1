"""Metering's Kafka intake: every usage topic, decoded by the runtime's idempotent consumer, goes to
one use case (`service.record_usage`)."""

from __future__ import annotations

from collections.abc import Sequence

from billing_contracts.base import Message
from metering.service import USAGE_CONTRACTS, record_usage
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.database import Session

__all__ = ["USAGE_CONTRACTS", "UsageEventIntake"]


class UsageEventIntake:
    """The batch use case behind every usage topic: thin, one call of `record_usage`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        return await record_usage(session, events, self._clock)
