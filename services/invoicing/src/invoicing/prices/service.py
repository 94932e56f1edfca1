"""Price-list use cases (B-07): the price book billing uses, loading price lists from the configured
file or the API, consistent with what is stored and billed."""

from __future__ import annotations

import dataclasses
import datetime as dt

from invoicing.prices.domain import PriceBook, PriceListError
from invoicing.prices.loader import PriceListFormatError, StoredPriceList, one_list_documents, with_valid_to
from invoicing.prices.repository import PriceListRepository
from service_runtime.database import Session

SOURCE_FILE = "file"
SOURCE_API = "api"


async def stored_price_lists(session: Session) -> list[StoredPriceList]:
    """Every stored price list, by the day it starts."""
    return await PriceListRepository(session).all()


async def stored_price_book(session: Session) -> PriceBook | None:
    """The price book made of every stored price list; None before any is stored."""
    lists = await PriceListRepository(session).all()
    if not lists:
        return None
    return PriceBook(price_lists=tuple(s.parse() for s in lists), is_sample=any(s.is_sample for s in lists))


async def price_book_for_billing(session: Session, configured: PriceBook) -> PriceBook:
    """The stored price book, or the configured one when nothing is stored yet."""
    return await stored_price_book(session) or configured


async def store_price_book(
    session: Session,
    text: str,
    *,
    source: str,
    now: dt.datetime,
    loaded_by: str,
    allow_sample: bool = True,
) -> list[StoredPriceList]:
    """Add the price lists of a price book YAML; the stored lists they join must stay consistent (B-07).

    A list already stored under the same id with the same content is skipped (loading twice is
    harmless); the same id with other content is refused, because billed months must keep their
    prices. A new list may not start in a month already invoiced. An open-ended list in force
    before a new list's first month is closed at the end of the month before it; any other
    overlap is refused. Raises `PriceListError` saying why.
    """
    incoming = one_list_documents(text)
    if not allow_sample and any(is_sample for _, _, is_sample in incoming):
        raise PriceListError("SAMPLE price lists are refused here (INVOICING_ALLOW_SAMPLE_PRICES is false)")
    repo = PriceListRepository(session)
    await repo.lock()
    existing = {s.price_list_id: s for s in await repo.all()}
    last_billed = await repo.last_billed_month()
    closing: dict[str, dt.date] = {}
    added: list[StoredPriceList] = []
    lists = {pid: s.parse() for pid, s in existing.items()}
    for price_list, document, is_sample in incoming:
        known = existing.get(price_list.id)
        if known is not None:
            stored = known.parse()
            # A stored list closed by a later one still matches the open-ended list it was loaded as.
            reopened = (
                dataclasses.replace(price_list, valid_to=stored.valid_to)
                if price_list.valid_to is None
                else price_list
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
                lists[pid] = dataclasses.replace(other, valid_to=end)
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
                loaded_by=loaded_by,
            )
        )
    PriceBook(price_lists=tuple(lists.values()))  # refuses overlaps
    for pid, end in closing.items():
        await repo.close(pid, end, with_valid_to(existing[pid].document, end))
    await repo.add(added)
    return added


#: The `loaded_by` of price lists from the configured file: the deployment, not a person.
CONFIGURATION = "configuration"


async def ensure_configured_price_lists(session: Session, text: str, *, now: dt.datetime) -> int:
    """Store the configured file's price lists that are not stored yet; stored lists win (loaded once)."""
    repo = PriceListRepository(session)
    stored = await repo.all()
    known = {s.price_list_id for s in stored}
    new = [
        (pl, document, is_sample)
        for pl, document, is_sample in one_list_documents(text)
        if pl.id not in known
    ]
    if not new:
        return 0
    try:
        PriceBook(price_lists=tuple(s.parse() for s in stored) + tuple(pl for pl, _, _ in new))
    except PriceListError as exc:
        raise PriceListFormatError(f"the configured price lists clash with the stored ones: {exc}") from None
    rows = [
        StoredPriceList(
            price_list_id=pl.id,
            valid_from=pl.valid_from,
            valid_to=pl.valid_to,
            is_sample=is_sample,
            document=document,
            source=SOURCE_FILE,
            loaded_at=now,
            loaded_by=CONFIGURATION,
        )
        for pl, document, is_sample in new
    ]
    await repo.add(rows, skip_known=True)
    return len(rows)
