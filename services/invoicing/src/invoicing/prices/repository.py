"""Price lists in PostgreSQL (B-07): one row per list, each with the one-list price book YAML it is
read from. The rules of loading them are in `prices.service`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.prices.loader import StoredPriceList

_P = t.price_lists.c


class PriceListRepository:
    """The stored price lists, in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def all(self) -> list[StoredPriceList]:
        """Every stored list, by the day it starts."""
        rows = (await self._session.execute(select(t.price_lists).order_by(_P.valid_from))).mappings()
        return [StoredPriceList(**dict(r)) for r in rows]

    async def lock(self) -> None:
        """Serialise loads of price lists (replicas, concurrent requests) until the transaction ends."""
        await self._session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext("invoicing:price_lists")))
        )

    async def last_billed_month(self) -> YearMonth | None:
        """The latest billing period with an invoice (its prices may not change)."""
        month = await self._session.scalar(select(func.max(t.invoices.c.billing_period)))
        return None if month is None else YearMonth.parse(str(month))

    async def close(self, price_list_id: str, valid_to: dt.date, document: str) -> None:
        """End an open-ended list (its document says so too)."""
        await self._session.execute(
            update(t.price_lists)
            .where(_P.price_list_id == price_list_id)
            .values(valid_to=valid_to, document=document)
        )

    async def add(self, lists: Sequence[StoredPriceList], *, skip_known: bool = False) -> None:
        """Store new lists; with `skip_known`, a list whose id is stored already is left as it is."""
        if not lists:
            return
        statement = insert(t.price_lists).values([s.__dict__ for s in lists])
        await self._session.execute(statement.on_conflict_do_nothing() if skip_known else statement)
