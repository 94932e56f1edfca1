"""Metering's HTTP API: usage of an environment and month, and closing a month."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from billing_contracts.metering import UsageFigures
from metering.items import ItemKind, list_items
from metering.repository import SqlAlchemyUsageRepository
from metering.service import MonthNotOverError, close_month, figures
from service_runtime.host import ServiceHost

MonthParam = Annotated[
    str, Path(pattern=r"^20\d{2}-(0[1-9]|1[0-2])$", description="Helsinki month YYYY-MM (2000-01…2099-12).")
]


class MonthlyUsageView(BaseModel):
    environment_id: str
    month: str
    status: Literal["open", "closed"] = Field(
        description="`closed` once metering published the month's final usage."
    )
    usage: UsageFigures
    adjustments: int = Field(description="Late adjustments published for this month after it closed.")


class ItemPageView(BaseModel):
    environment_id: str
    month: str
    kind: ItemKind
    items: list[dict[str, Any]] = Field(description="Items in their natural key order.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class CloseView(BaseModel):
    month: str
    closed_now: bool = Field(
        description="False when the month had been closed already (closing is idempotent)."
    )
    environment_count: int


def build_router(host: ServiceHost, *, grace: timedelta) -> APIRouter:
    router = APIRouter(tags=["usage"])

    @router.get("/environments/{environment_id}/usage/{month}", response_model=MonthlyUsageView)
    async def get_usage(environment_id: str, month: MonthParam) -> MonthlyUsageView:
        async with host.sessions() as session:
            repo = SqlAlchemyUsageRepository(session)
            usage = (await repo.usage(month, [environment_id]))[environment_id]
            closed = await repo.is_closed(month)
            adjustments = await repo.adjustments_of(environment_id, month)
        return MonthlyUsageView(
            environment_id=environment_id,
            month=month,
            status="closed" if closed else "open",
            usage=figures(usage),
            adjustments=adjustments,
        )

    @router.get("/environments/{environment_id}/usage/{month}/items/{kind}", response_model=ItemPageView)
    async def get_items(
        environment_id: str,
        month: MonthParam,
        kind: ItemKind,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    ) -> ItemPageView:
        """Everything behind one figure (B-19): each voucher, payee, message, user or hour entry."""
        async with host.sessions() as session:
            try:
                page = await list_items(session, kind, environment_id, month, limit=limit, cursor=cursor)
            except ValueError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return ItemPageView(
            environment_id=environment_id,
            month=month,
            kind=kind,
            items=page.items,
            next_cursor=page.next_cursor,
        )

    @router.post("/months/{month}/close", response_model=CloseView)
    async def close(month: MonthParam, request: Request) -> CloseView:
        try:
            result = await close_month(host.sessions, host.clock, month, grace=grace)
        except MonthNotOverError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        host.relay.wake()
        return CloseView(
            month=result.month, closed_now=result.closed_now, environment_count=result.environment_count
        )

    return router
