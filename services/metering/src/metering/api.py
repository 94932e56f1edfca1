"""Metering's HTTP API: usage of an environment and month, and closing a month."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from billing_contracts.metering import UsageFigures
from metering.repository import ItemKind, ItemRepository, SqlAlchemyUsageRepository
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


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VoucherItem(_Item):
    """B-08…B-11: a voucher of the month, counted or not."""

    voucher_id: str
    document_kind: str
    created_at: dt.datetime
    voided_at: dt.datetime | None
    counted: bool = Field(
        description="Whether it counts: a voucher kind of B-10, not voided in its month (B-11)."
    )


class PayeeItem(_Item):
    """B-12: a person paid in the month, by the first payslip that made them a payee."""

    person_id: str
    first_payslip_id: str
    first_calculated_at: dt.datetime


class MessageItem(_Item):
    """B-13: an e-invoice sent or received, and whether its channel carries a fee."""

    voucher_id: str
    direction: str = Field(description="`sent` or `received`.")
    channel: str
    at: dt.datetime
    charged: bool = Field(description="Only the fee channels (operator, bank) are charged (B-13).")


class UserItem(_Item):
    """B-16: a user at month end with their roles."""

    user_id: str
    roles_at_month_end: list[str]
    since: dt.datetime
    billable: bool = Field(
        description="Whether a role other than the free ones makes the user billable (B-16)."
    )


class SignatureItem(_Item):
    signature_id: str
    signer_count: int
    completed_at: dt.datetime


class HourItem(_Item):
    """I-07: a recorded hour entry."""

    entry_id: str
    employee_id: str
    service_product_code: str
    work_date: dt.date
    hours: str = Field(description="Hours, as an exact decimal string.")
    billable: bool
    recorded_at: dt.datetime


Item = VoucherItem | PayeeItem | MessageItem | UserItem | SignatureItem | HourItem


class ItemPageView(BaseModel):
    environment_id: str
    month: str
    kind: ItemKind
    items: list[Item] = Field(description="Items in their natural key order; their shape depends on `kind`.")
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
                page = await ItemRepository(session).page(
                    kind, environment_id, month, limit=limit, cursor=cursor
                )
            except ValueError as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return ItemPageView.model_validate(
            {
                "environment_id": environment_id,
                "month": month,
                "kind": kind,
                "items": page.items,
                "next_cursor": page.next_cursor,
            }
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
