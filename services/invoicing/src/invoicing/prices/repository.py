"""Price lists in PostgreSQL: effective-dated data loaded from the configured file or the API (B-07)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.prices.domain import PriceBook, PriceList, PriceListError
from invoicing.prices.loader import PriceListFormatError, parse_price_book

SOURCE_FILE = "file"
SOURCE_API = "api"

_P = t.price_lists.c


@dataclass(frozen=True)
class StoredPriceList:
    """One price list as stored: its validity and the one-list price book YAML it is read from."""

    price_list_id: str
    valid_from: dt.date
    valid_to: dt.date | None
    is_sample: bool
    document: str
    source: str
    loaded_at: dt.datetime

    def parse(self) -> PriceList:
        return parse_price_book(self.document).price_lists[0]


def _one_list_documents(text: str) -> list[tuple[PriceList, str, bool]]:
    """Each price list of a price book YAML, with a one-list YAML of its own (validated first)."""
    book = parse_price_book(text)
    raw: Any = yaml.safe_load(text)
    documents = []
    for price_list, raw_list in zip(book.price_lists, raw["price_lists"], strict=True):
        one = {"sample": book.is_sample, "price_lists": [raw_list]}
        documents.append(
            (price_list, yaml.safe_dump(one, sort_keys=False, allow_unicode=True), book.is_sample)
        )
    return documents


def _with_valid_to(document: str, valid_to: dt.date) -> str:
    raw: Any = yaml.safe_load(document)
    raw["price_lists"][0]["valid_to"] = valid_to
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def configured_price_book_text(path: Path | None) -> str:
    """The YAML of the configured price book: the file, or the bundled SAMPLE when none is set."""
    if path is not None:
        return path.read_text(encoding="utf-8")
    return resources.files("invoicing").joinpath("price_lists/sample.yaml").read_text("utf-8")


async def stored_price_lists(session: AsyncSession) -> list[StoredPriceList]:
    rows = (await session.execute(select(t.price_lists).order_by(_P.valid_from))).mappings()
    return [StoredPriceList(**dict(r)) for r in rows]


async def stored_price_book(session: AsyncSession) -> PriceBook | None:
    """The price book made of every stored price list; None before any is stored."""
    lists = await stored_price_lists(session)
    if not lists:
        return None
    return PriceBook(price_lists=tuple(s.parse() for s in lists), is_sample=any(s.is_sample for s in lists))


async def price_book_for_billing(session: AsyncSession, configured: PriceBook) -> PriceBook:
    """The stored price book, or the configured one when nothing is stored yet."""
    return await stored_price_book(session) or configured


async def _last_billed_month(session: AsyncSession) -> YearMonth | None:
    month = await session.scalar(select(func.max(t.invoices.c.billing_period)))
    return None if month is None else YearMonth.parse(str(month))


async def store_price_book(
    session: AsyncSession, text: str, *, source: str, now: dt.datetime, allow_sample: bool = True
) -> list[StoredPriceList]:
    """Add the price lists of a price book YAML; the stored lists they join must stay consistent (B-07).

    A list already stored under the same id with the same content is skipped (loading twice is
    harmless); the same id with other content is refused, because billed months must keep their
    prices. A new list may not start in a month already invoiced. An open-ended list in force
    before a new list's first month is closed at the end of the month before it; any other
    overlap is refused. Raises `PriceListError` saying why.
    """
    incoming = _one_list_documents(text)
    if not allow_sample and any(is_sample for _, _, is_sample in incoming):
        raise PriceListError("SAMPLE price lists are refused here (INVOICING_ALLOW_SAMPLE_PRICES is false)")
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext("invoicing:price_lists"))))
    existing = {s.price_list_id: s for s in await stored_price_lists(session)}
    last_billed = await _last_billed_month(session)
    closing: dict[str, dt.date] = {}
    added: list[StoredPriceList] = []
    lists = {pid: s.parse() for pid, s in existing.items()}
    for price_list, document, is_sample in incoming:
        known = existing.get(price_list.id)
        if known is not None:
            stored = known.parse()
            # A stored list closed by a later one still matches the open-ended list it was loaded as.
            reopened = (
                replace(price_list, valid_to=stored.valid_to) if price_list.valid_to is None else price_list
            )
            if stored != reopened:
                raise PriceListError(
                    f"price list {price_list.id} is already stored with other prices; give the new prices a new id"
                )
            continue
        if last_billed is not None and price_list.first_month <= last_billed:
            raise PriceListError(
                f"price list {price_list.id} starts in {price_list.first_month}, but {last_billed} is already invoiced"
            )
        for pid, other in list(lists.items()):
            if other.valid_to is None and other.valid_from < price_list.valid_from:
                end = price_list.first_month.prev().last_day
                lists[pid] = replace(other, valid_to=end)
                closing[pid] = end
        lists[price_list.id] = price_list
        added.append(
            StoredPriceList(
                price_list_id=price_list.id,
                valid_from=price_list.valid_from,
                valid_to=price_list.valid_to,
                is_sample=is_sample,
                document=document,
                source=source,
                loaded_at=now,
            )
        )
    PriceBook(price_lists=tuple(lists.values()))  # refuses overlaps
    for pid, end in closing.items():
        await session.execute(
            update(t.price_lists)
            .where(_P.price_list_id == pid)
            .values(valid_to=end, document=_with_valid_to(existing[pid].document, end))
        )
    if added:
        await session.execute(insert(t.price_lists).values([a.__dict__ for a in added]))
    return added


async def ensure_configured_price_lists(session: AsyncSession, text: str, *, now: dt.datetime) -> int:
    """Store the configured file's price lists that are not stored yet; stored lists win (loaded once)."""
    stored = await stored_price_lists(session)
    known = {s.price_list_id for s in stored}
    new = [
        (pl, document, is_sample)
        for pl, document, is_sample in _one_list_documents(text)
        if pl.id not in known
    ]
    if not new:
        return 0
    try:
        PriceBook(price_lists=tuple(s.parse() for s in stored) + tuple(pl for pl, _, _ in new))
    except PriceListError as exc:
        raise PriceListFormatError(f"the configured price lists clash with the stored ones: {exc}") from None
    rows = [
        {
            "price_list_id": pl.id,
            "valid_from": pl.valid_from,
            "valid_to": pl.valid_to,
            "is_sample": is_sample,
            "document": document,
            "source": SOURCE_FILE,
            "loaded_at": now,
        }
        for pl, document, is_sample in new
    ]
    await session.execute(insert(t.price_lists).values(rows).on_conflict_do_nothing())
    return len(rows)
