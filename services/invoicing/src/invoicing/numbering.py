"""The one invoice-number series of invoices and credit notes (B-18), shared by billing and receivables."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing import tables as t

_SEQUENCE = f"{t.invoice_number_seq.schema}.{t.invoice_number_seq.name}"
# The sequence's name comes from our table metadata, never from input; the count is bound.
_TAKE = text(f"SELECT nextval('{_SEQUENCE}') FROM generate_series(1, :n)")  # noqa: S608


class InvoiceNumbers:
    """Takes numbers of the database sequence in the caller's transaction: unique and increasing;
    a number taken by a transaction that rolls back is skipped (the benchmark checks the run has no gaps)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def take(self, n: int) -> list[int]:
        """`n` numbers, ascending."""
        if n <= 0:
            return []
        rows = await self._session.execute(_TAKE, {"n": n})
        return sorted(int(v) for v in rows.scalars())
