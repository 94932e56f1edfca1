"""Partners' HTTP API."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from partners.service import end_customer_count
from service_runtime.host import ServiceHost


class FirmView(BaseModel):
    firm_id: str
    end_customers: int = Field(description="Active environments the firm serves as accounting firm (P-03).")


def build_router(host: ServiceHost) -> APIRouter:
    router = APIRouter(tags=["firms"])

    @router.get("/firms/{firm_id}", response_model=FirmView)
    async def get_firm(firm_id: str) -> FirmView:
        async with host.sessions() as session:
            return FirmView(firm_id=firm_id, end_customers=await end_customer_count(session, firm_id))

    return router
