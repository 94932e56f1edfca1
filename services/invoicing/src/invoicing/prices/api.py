"""Price lists over HTTP (B-07): list them, read one, load more. Typed responses; thin routes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from invoicing.prices.domain import PriceListError
from invoicing.prices.loader import StoredPriceList
from invoicing.prices.service import (
    SOURCE_API,
    ensure_configured_price_lists,
    store_price_book,
    stored_price_lists,
)
from service_runtime.auth import Caller, authenticated
from service_runtime.database import Session
from service_runtime.host import ServiceHost


class PriceListView(BaseModel):
    price_list_id: str
    valid_from: dt.date
    valid_to: dt.date | None
    is_sample: bool = Field(description="Made-up SAMPLE prices; production refuses them.")
    source: str = Field(description="`file` (the configured price book) or `api`.")
    loaded_at: dt.datetime
    loaded_by: str | None = Field(
        description="Who loaded it: the price administrator's token subject (`api`), `configuration` (`file`)."
    )


class PriceListDocumentView(PriceListView):
    document: str = Field(description="The price list as the one-list price book YAML it is read from.")


def _price_list_view(stored: StoredPriceList) -> PriceListView:
    return PriceListView(**{k: v for k, v in stored.__dict__.items() if k != "document"})


def build_prices_router(
    host: ServiceHost, *, configured_price_book: str, allow_sample_prices: bool = True
) -> APIRouter:
    """`configured_price_book`: the YAML of the configured price book, stored before any API load;
    without `allow_sample_prices`, SAMPLE price lists are refused (as at start-up)."""
    router = APIRouter()

    async def ensure_configured(session: Session) -> None:
        await ensure_configured_price_lists(session, configured_price_book, now=host.clock.now())

    @router.get("/price-lists", response_model=list[PriceListView], tags=["price lists"])
    async def list_price_lists() -> list[PriceListView]:
        """Every price list with its validity, oldest first (B-07)."""
        async with host.sessions.begin() as session:
            await ensure_configured(session)
            stored = await stored_price_lists(session)
        return [_price_list_view(s) for s in stored]

    @router.get("/price-lists/{price_list_id}", tags=["price lists"])
    async def get_price_list(price_list_id: str) -> PriceListDocumentView:
        """One price list: its validity and its prices as the one-list price book YAML it is read from."""
        async with host.sessions.begin() as session:
            await ensure_configured(session)
            stored = {s.price_list_id: s for s in await stored_price_lists(session)}
        if price_list_id not in stored:
            raise HTTPException(status_code=404, detail=f"no price list {price_list_id}")
        return PriceListDocumentView.model_validate(stored[price_list_id].__dict__)

    @router.post(
        "/price-lists",
        response_model=list[PriceListView],
        status_code=201,
        tags=["price lists"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/yaml": {"schema": {"type": "string"}}},
                "description": "A price book YAML as in `price_lists/sample.yaml`; money as quoted strings.",
            }
        },
    )
    async def load_price_lists(
        request: Request, caller: Annotated[Caller, authenticated]
    ) -> list[PriceListView]:
        """Add effective-dated price lists (B-07); 422 with the reason when they do not fit.

        Audited: `loaded_by` is the caller (the token's subject)."""
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            async with host.sessions.begin() as session:
                await ensure_configured(session)
                added = await store_price_book(
                    session,
                    text,
                    source=SOURCE_API,
                    now=host.clock.now(),
                    loaded_by=caller.subject,
                    allow_sample=allow_sample_prices,
                )
        except PriceListError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return [_price_list_view(s) for s in added]

    return router
