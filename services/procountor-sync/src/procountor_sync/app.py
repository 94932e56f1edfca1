"""Composition root of procountor-sync."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from fastapi import FastAPI

from procountor_sync import consumers
from procountor_sync.api import build_router
from procountor_sync.domain import DeliveryPolicy, RetrySchedule
from procountor_sync.keylogin import ApiKeys, default_login_url
from procountor_sync.policies import ROUTE_POLICIES
from procountor_sync.procountor_client import ProcountorClient, ProcountorClientConfig
from procountor_sync.repository import PostgresThrottle
from procountor_sync.service import ProcountorSync, SyncOptions
from procountor_sync.settings import ProcountorSyncSettings
from procountor_sync.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.host import ServiceHost, create_service_app

log = structlog.get_logger(__name__)

WEBHOOK_EVENTS = ["INVOICE_PAYMENT_CREATED"]


def create_app(settings: ProcountorSyncSettings, clock: Clock) -> FastAPI:
    host = ServiceHost(name="procountor-sync", settings=settings, clock=clock, tables=runtime_tables)
    if settings.run_consumers:
        consumers.subscribe(host, clock)
    client_id = settings.procountor_client_id.get_secret_value()
    keys = ApiKeys(
        host.sessions,
        configured=settings.procountor_api_key,
        encryption_key=settings.credential_key,
        clock=clock,
    )
    # One limit for every replica (20 requests/s per API client), in PostgreSQL.
    throttle = PostgresThrottle(host.engine, client_id=client_id, limit=settings.rate_limit_per_second)
    client = ProcountorClient(
        ProcountorClientConfig(
            base_url=settings.procountor_base_url,
            client_id=client_id,
            client_secret=settings.procountor_client_secret,
            api_key=settings.procountor_api_key,
            max_requests_per_second=settings.rate_limit_per_second,
            max_attempts=settings.request_attempts,
            backoff_max_seconds=settings.request_backoff_max_seconds,
        ),
        throttle=throttle,
        api_key=keys.current,
        metrics=host.metrics.procountor,
    )
    sync = ProcountorSync(
        sessions=host.sessions,
        engine=host.engine,
        procountor=client,
        clock=clock,
        policy=DeliveryPolicy(
            seller_iban=settings.seller_iban,
            vat_status=settings.vat_status,
            first_invoice_einvoice=settings.first_invoice_einvoice,
            vendor_einvoice_operators=frozenset(settings.vendor_einvoice_operators),
            hold_channels=frozenset(settings.hold_channels),
            hold_first_invoices=settings.hold_first_invoices,
        ),
        options=SyncOptions(
            concurrency=settings.delivery_concurrency,
            lease_seconds=settings.delivery_lease_seconds,
            idle_seconds=settings.delivery_interval_seconds,
            schedule=RetrySchedule(
                initial=_seconds(settings.retry_initial_seconds), maximum=_seconds(settings.retry_max_seconds)
            ),
            poll_seconds=settings.poll_interval_seconds,
            webhook_tolerance_seconds=settings.webhook_tolerance_seconds,
            file_payers=frozenset(settings.file_payers),
        ),
        metrics=host.metrics.procountor,
        on_outbox_written=host.relay.wake,
        webhook_secret=settings.webhook_secret,
    )

    async def deliver_forever() -> None:
        try:
            await sync.run_deliveries()
        finally:
            await client.aclose()
            await throttle.close()

    async def keep_webhook_registered() -> None:
        """Our receiver subscribed at Procountor, checked again every hour (a lost one is put back)."""
        url = settings.webhook_public_url
        body = {
            "url": url,
            "authenticationType": "HMAC",
            "authenticationMeta": {"secret": settings.webhook_secret.get_secret_value()},
            "subscriptions": WEBHOOK_EVENTS,
        }
        delay = 1.0
        while True:
            try:
                existing = [h for h in await client.list_webhooks() if h.get("url") == url]
                if existing:
                    await client.replace_webhook(str(existing[0]["uuid"]), body)
                else:
                    await client.create_webhook(body)
                log.info("webhook_registered", url=url)
                delay = 1.0
                await asyncio.sleep(3600)
            except Exception as exc:
                log.warning("webhook_registration_failed", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    host.measure("procountor_deliveries", sync.measure_deliveries)
    host.run_in_background(deliver_forever, name="procountor-deliveries")
    host.run_in_background(sync.run_polling, name="procountor-polling")
    if settings.webhook_public_url and settings.webhook_secret.get_secret_value():
        host.run_in_background(keep_webhook_registered, name="procountor-webhook")
    app = create_service_app(
        host,
        title="Procountor sync",
        description=(
            "Two-way sync with the Procountor REST API: invoices, credit notes and due dates out; "
            "customers, products and payments back; transfer files; the key-login flow."
        ),
        routers=[
            build_router(
                host,
                sync,
                keys,
                client,
                login_url=settings.procountor_login_url or default_login_url(settings.procountor_base_url),
                client_id=client_id,
                redirect_uri=settings.keylogin_redirect_uri,
                seller_iban=settings.seller_iban,
                salary_type_code=settings.payroll_salary_type_code,
            )
        ],
        policies=ROUTE_POLICIES,
    )
    app.state.sync = sync
    return app


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
