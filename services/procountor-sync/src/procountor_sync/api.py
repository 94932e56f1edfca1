"""Procountor-sync's HTTP API: delivery state of invoices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from procountor_sync.tables import deliveries
from service_runtime.host import ServiceHost


def build_router(host: ServiceHost) -> APIRouter:
    router = APIRouter(tags=["deliveries"])

    @router.get("/deliveries/{invoice_id}")
    async def get_delivery(invoice_id: str) -> dict[str, Any]:
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
        return dict(row)

    return router
