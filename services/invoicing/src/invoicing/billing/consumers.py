"""Invoicing's intake use cases: metering's usage and month closes, partner tiers (contracts: contract_service)."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import Message
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.partners import PartnerTierChangedV1
from invoicing import tables as t
from service_runtime.bulk import insert_rows, jsonb
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection

log = structlog.get_logger(__name__)


class UsageIntake:
    """Batch use case for metering's output: final usage, month closes and late adjustments.

    Metering publishes each fact once per event id; a month's final usage and its adjustments
    are kept as published. The billing run decides how each is billed (B-04).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        now = self._clock.now()
        finalized: dict[tuple[str, str], str] = {}
        adjusted: dict[tuple[str, str, int], dict[str, object]] = {}
        closes: list[MonthClosedV1] = []
        rejections: list[Rejection] = []
        for event in events:
            match event:
                case UsageFinalizedV1():
                    finalized.setdefault(
                        (event.environment_id, event.month), jsonb(event.usage.model_dump(mode="json"))
                    )
                case UsageAdjustedV1():
                    adjusted.setdefault(
                        (event.environment_id, event.month, event.adjustment_no),
                        {
                            "environment_id": event.environment_id,
                            "month": event.month,
                            "adjustment_no": event.adjustment_no,
                            "usage": jsonb(event.usage.model_dump(mode="json")),
                            "previous": jsonb(event.previous.model_dump(mode="json")),
                            "received_at": now,
                        },
                    )
                case MonthClosedV1():
                    closes.append(event)
                case _:
                    rejections.append(
                        Rejection(event.event_id, f"unsupported message {type(event).__name__}")
                    )
        # One statement per table whatever the batch size: a month close brings one message per environment.
        await insert_rows(
            session,
            t.monthly_usage,
            [
                {"environment_id": env, "month": month, "usage": usage, "received_at": now}
                for (env, month), usage in finalized.items()
            ],
        )
        await insert_rows(session, t.usage_adjustments, list(adjusted.values()))
        for close in closes:
            await session.execute(
                insert(t.closed_months)
                .values(
                    month=close.month, environment_count=close.environment_count, closed_at=close.occurred_at
                )
                .on_conflict_do_nothing()
            )
        return rejections


class PartnerTierIntake:
    """P-07: keep each firm's tier by the first month it is billed with (`effective_month`)."""

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        rejections: list[Rejection] = []
        for event in events:
            if not isinstance(event, PartnerTierChangedV1):
                rejections.append(Rejection(event.event_id, f"unsupported message {type(event).__name__}"))
                continue
            stmt = insert(t.partner_tiers).values(
                firm_id=event.firm_id,
                effective_month=event.effective_month,
                tier=event.new_tier.value,
                changed_at=event.occurred_at,
                reason=event.reason,
                event_id=event.event_id,
            )
            # Two changes effective in the same month: the one that happened later wins, in any order.
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.partner_tiers.c.firm_id, t.partner_tiers.c.effective_month],
                    set_={
                        "tier": stmt.excluded.tier,
                        "changed_at": stmt.excluded.changed_at,
                        "reason": stmt.excluded.reason,
                        "event_id": stmt.excluded.event_id,
                    },
                    where=stmt.excluded.changed_at > t.partner_tiers.c.changed_at,
                )
            )
            log.info(
                "partner_tier_recorded",
                firm_id=event.firm_id,
                tier=event.new_tier.value,
                month=event.effective_month,
            )
        return rejections
