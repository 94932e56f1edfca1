"""What billing keeps of its inputs from other services, as they arrive: metering's final usage, late
adjustments and month closes (B-04), and partners' tier changes (P-07). Written by the intake;
read by the run through `billing.repository`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.metering import MonthClosedV1
from billing_contracts.partners import PartnerTierChangedV1
from invoicing import tables as t
from service_runtime.bulk import insert_rows


class UsageRepository:
    """Billing's inputs, written in the caller's transaction; every write is idempotent."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def save_final_usage(self, rows: Sequence[dict[str, Any]]) -> None:
        """Final usage per environment and month (`usage` as JSON text), kept as first published."""
        await insert_rows(self._session, t.monthly_usage, rows)

    async def save_adjustments(self, rows: Sequence[dict[str, Any]]) -> None:
        """Late adjustments (`usage`, `previous` as JSON text), one per number, kept as first published."""
        await insert_rows(self._session, t.usage_adjustments, rows)

    async def record_month_closed(self, close: MonthClosedV1) -> None:
        await self._session.execute(
            insert(t.closed_months)
            .values(month=close.month, environment_count=close.environment_count, closed_at=close.occurred_at)
            .on_conflict_do_nothing()
        )

    async def save_tier_change(self, event: PartnerTierChangedV1) -> None:
        """A firm's tier from its effective month; of two changes for one month, the later one wins
        (at the same instant, the one that arrived later: a firm's changes share its partition)."""
        stmt = insert(t.partner_tiers).values(
            firm_id=event.firm_id,
            effective_month=event.effective_month,
            tier=event.new_tier.value,
            changed_at=event.occurred_at,
            reason=event.reason,
            event_id=event.event_id,
        )
        await self._session.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.partner_tiers.c.firm_id, t.partner_tiers.c.effective_month],
                set_={
                    "tier": stmt.excluded.tier,
                    "changed_at": stmt.excluded.changed_at,
                    "reason": stmt.excluded.reason,
                    "event_id": stmt.excluded.event_id,
                },
                where=stmt.excluded.changed_at >= t.partner_tiers.c.changed_at,
            )
        )
