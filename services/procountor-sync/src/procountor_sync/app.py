"""Composition root of procountor-sync."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI

from billing_contracts.invoicing import InvoiceIssuedV1
from billing_contracts.registry import topic_for
from procountor_sync.api import build_router
from procountor_sync.gateway import RestProcountorGateway
from procountor_sync.policies import ROUTE_POLICIES
from procountor_sync.procountor_client import ProcountorClient, ProcountorClientConfig
from procountor_sync.service import InvoiceDeliverer, InvoiceQueue
from procountor_sync.settings import ProcountorSyncSettings
from procountor_sync.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app
from service_runtime.ratelimit import RateLimitedLog

log = structlog.get_logger(__name__)


def create_app(settings: ProcountorSyncSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="procountor-sync", settings=settings, clock=clock, tables=runtime_tables)
    host.consume(
        {topic_for(InvoiceIssuedV1): InvoiceIssuedV1}, InvoiceQueue(clock), group="procountor-sync-invoices"
    )
    client = ProcountorClient(
        ProcountorClientConfig(
            base_url=settings.procountor_base_url,
            client_id=settings.procountor_client_id.get_secret_value(),
            client_secret=settings.procountor_client_secret,
            api_key=settings.procountor_api_key,
        )
    )
    deliverer = InvoiceDeliverer(
        sessions=host.sessions,
        gateway=RestProcountorGateway(client),
        clock=clock,
        seller_iban=settings.seller_iban,
        vat_status=settings.vat_status,
    )

    warnings = RateLimitedLog(log)

    async def deliver_forever() -> None:
        try:
            while True:
                try:
                    attempted = await deliverer.deliver_due()
                    warnings.recovered("delivery_round_failed")
                    if attempted:
                        host.relay.wake()
                        continue
                except Exception:
                    warnings.warning("delivery_round_failed", exc_info=True)
                await asyncio.sleep(settings.delivery_interval_seconds)
        finally:
            await client.aclose()

    host.run_in_background(deliver_forever)
    return create_service_app(
        host,
        title="Procountor sync",
        description="Two-way sync with the Procountor REST API: customers, products, invoices, payments.",
        routers=[build_router(host)],
        policies=ROUTE_POLICIES,
    )
