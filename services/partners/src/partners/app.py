"""Composition root of partners."""

from __future__ import annotations

from fastapi import FastAPI

from billing_contracts.invoicing import ContractChangedV1
from billing_contracts.registry import topic_for
from partners.api import build_router
from partners.policies import ROUTE_POLICIES
from partners.service import follow_contracts
from partners.settings import PartnersSettings
from partners.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app


def create_app(settings: PartnersSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="partners", settings=settings, clock=clock, tables=runtime_tables)
    host.consume({topic_for(ContractChangedV1): ContractChangedV1}, follow_contracts)
    return create_service_app(
        host,
        title="Partners",
        description="The accounting-firm partner program: tiers, benefits, commissions, directory.",
        routers=[build_router(host)],
        policies=ROUTE_POLICIES,
    )
