"""Invoicing's HTTP API for contracts (create, change, history) and price lists."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from sqlalchemy import select

from billing_contracts.contracts import ContractSignedV1
from invoicing import tables as t
from invoicing.contract_service import ContractRefusedError, sign_contract
from service_runtime.host import ServiceHost


class ContractCreated(BaseModel):
    contract_id: str


def build_contracts_router(host: ServiceHost) -> APIRouter:
    router = APIRouter()

    @router.post("/contracts", response_model=ContractCreated, status_code=201, tags=["contracts"])
    async def create_contract(body: dict[str, Any]) -> ContractCreated:
        envelope = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": host.clock.now().isoformat(),
            "producer": "http",
        }
        command = ContractSignedV1.model_validate(envelope | body)
        try:
            async with host.sessions.begin() as session:
                contract_id = await sign_contract(session, command, host.clock)
        except ContractRefusedError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        host.relay.wake()
        return ContractCreated(contract_id=contract_id)

    @router.get("/contracts/{contract_id}", tags=["contracts"])
    async def get_contract(contract_id: str) -> dict[str, Any]:
        async with host.sessions() as session:
            row = (
                (await session.execute(select(t.contracts).where(t.contracts.c.contract_id == contract_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise HTTPException(status_code=404, detail=f"no contract {contract_id}")
        return dict(row)

    return router
