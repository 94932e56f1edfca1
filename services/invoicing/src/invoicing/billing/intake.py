"""Billing's intake use cases: metering's output (final usage, late adjustments, month closes) and
partners' tier changes, recorded as published; the run decides how each is billed (B-04, P-07)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import structlog

from billing_contracts.base import Message
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.partners import PartnerTierChangedV1
from invoicing.billing.usage_repository import UsageRepository
from service_runtime.bulk import jsonb
from service_runtime.consumer import Rejection
from service_runtime.database import Session

log = structlog.get_logger(__name__)


async def record_metering_output(
    session: Session, events: Sequence[Message], now: dt.datetime
) -> list[Rejection]:
    """Keep metering's final usage, adjustments and month closes as published (each once per key).

    One statement per table whatever the batch size: a month close brings one message per environment.
    """
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
                rejections.append(Rejection(event.event_id, f"unsupported message {type(event).__name__}"))
    repo = UsageRepository(session)
    await repo.save_final_usage(
        [
            {"environment_id": env, "month": month, "usage": usage, "received_at": now}
            for (env, month), usage in finalized.items()
        ]
    )
    await repo.save_adjustments(list(adjusted.values()))
    for close in closes:
        await repo.record_month_closed(close)
    return rejections


async def record_partner_tier(session: Session, event: PartnerTierChangedV1) -> None:
    """P-07: keep each firm's tier by the first month it is billed with (`effective_month`)."""
    await UsageRepository(session).save_tier_change(event)
    log.info(
        "partner_tier_recorded", firm_id=event.firm_id, tier=event.new_tier.value, month=event.effective_month
    )
