"""Partners use cases: follow contract state, count end customers (P-03)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.invoicing import ContractChangedV1
from partners.domain import is_end_customer
from partners.tables import environments
from service_runtime.consumer import Rejection


async def follow_contracts(session: AsyncSession, events: Sequence[ContractChangedV1]) -> list[Rejection]:
    """Keep the newest contract state per environment; older events arriving late change nothing."""
    newest: dict[str, ContractChangedV1] = {}
    for e in events:
        if e.environment_id not in newest or e.occurred_at >= newest[e.environment_id].occurred_at:
            newest[e.environment_id] = e
    if newest:
        rows = [
            {
                "environment_id": e.environment_id,
                "accounting_firm_id": e.accounting_firm_id,
                "status": e.status.value,
                "own_use": e.own_use,
                "is_end_customer": is_end_customer(e.status, e.accounting_firm_id, e.own_use),
                "changed_at": e.occurred_at,
            }
            for e in newest.values()
        ]
        stmt = insert(environments).values(rows)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[environments.c.environment_id],
                set_={c: stmt.excluded[c] for c in rows[0] if c != "environment_id"},
                where=stmt.excluded.changed_at >= environments.c.changed_at,
            )
        )
    return []


async def end_customer_count(session: AsyncSession, firm_id: str) -> int:
    """P-03: the firm's active end customers."""
    c = environments.c
    value = await session.scalar(
        select(func.count()).where(c.accounting_firm_id == firm_id, c.is_end_customer.is_(True))
    )
    return int(value or 0)
