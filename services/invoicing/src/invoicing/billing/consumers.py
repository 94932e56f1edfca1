"""Billing's Kafka intake: metering's usage and month closes, partners' tiers. Thin: decode → one use case."""

from __future__ import annotations

from collections.abc import Sequence

from billing_contracts.base import Message
from billing_contracts.partners import PartnerTierChangedV1
from invoicing.billing.intake import record_metering_output, record_partner_tier
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.database import Session


class UsageIntake:
    """Batch use case for metering's output: final usage, month closes and late adjustments.

    Metering publishes each fact once per event id; a month's final usage and its adjustments
    are kept as published. The billing run decides how each is billed (B-04).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        return await record_metering_output(session, events, self._clock.now())


class PartnerTierIntake:
    """P-07: keep each firm's tier by the first month it is billed with (`effective_month`)."""

    async def __call__(self, session: Session, events: Sequence[Message]) -> list[Rejection]:
        rejections: list[Rejection] = []
        for event in events:
            if not isinstance(event, PartnerTierChangedV1):
                rejections.append(Rejection(event.event_id, f"unsupported message {type(event).__name__}"))
                continue
            await record_partner_tier(session, event)
        return rejections
