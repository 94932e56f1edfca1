"""Procountor-sync's HTTP API: delivery state of invoices."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select

from procountor_sync.tables import deliveries
from service_runtime.host import ServiceHost


class DeliveryView(BaseModel):
    """Where an invoice's delivery to Procountor stands (I-01). A minimal typed view (issue 9); the
    sync's rebuild (issue 11) owns this API."""

    invoice_id: str
    invoice_number: str
    status: str = Field(description="`pending`, `delivered` or `failed`.")
    attempts: int = Field(description="Delivery attempts so far.")
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    procountor_partner_id: str | None = Field(description="The payer's customer id in Procountor.")
    procountor_invoice_id: str | None = Field(description="The invoice's id in Procountor.")
    procountor_status: str | None = Field(description="The invoice's status in Procountor.")
    updated_at: dt.datetime


def build_router(host: ServiceHost) -> APIRouter:
    router = APIRouter(tags=["deliveries"])

    @router.get("/deliveries/{invoice_id}")
    async def get_delivery(invoice_id: str) -> DeliveryView:
        d = deliveries.c
        async with host.sessions() as session:
            row = (
                (
                    await session.execute(
                        select(
                            d.invoice_id,
                            d.invoice_number,
                            d.status,
                            d.attempts,
                            d.last_error,
                            d.procountor_partner_id,
                            d.procountor_invoice_id,
                            d.procountor_status,
                            d.updated_at,
                        ).where(d.invoice_id == invoice_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise HTTPException(status_code=404, detail=f"no delivery of invoice {invoice_id}")
        return DeliveryView.model_validate(dict(row))

    return router
