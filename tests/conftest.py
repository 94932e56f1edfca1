"""Cross-service fixtures: all four services and the Procountor emulator on one broker and one database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billing_contracts.registry import TOPICS, all_topic_names
from devstack.broker import free_port
from devstack.infra import KafkaTarget, ensure_topics
from devstack.issuer import DevIssuer
from devstack.procountor import EmulatorProcess
from devstack.testing import Publisher, migrate, running, serve_http
from invoicing.app import create_app as create_invoicing
from invoicing.calendar import HELSINKI
from invoicing.settings import InvoicingSettings
from metering.app import create_app as create_metering
from metering.settings import MeteringSettings
from partners.app import create_app as create_partners
from partners.settings import PartnersSettings
from procountor_emulator.config import LOCAL_API_KEY, LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET
from procountor_sync.app import create_app as create_sync
from procountor_sync.settings import ProcountorSyncSettings
from service_runtime.clock import FixedClock


@dataclass
class Stack:
    metering: httpx.AsyncClient
    invoicing: httpx.AsyncClient
    partners: httpx.AsyncClient
    sync: httpx.AsyncClient
    procountor: httpx.AsyncClient
    publisher: Publisher
    clock: FixedClock
    kafka: KafkaTarget
    #: The running apps by service name, for tests that need more than HTTP (fuzzers: consumers, OpenAPI).
    apps: dict[str, FastAPI]
    emulator: EmulatorProcess
    #: The dev issuer the services trust; the clients above send a token holding every role.
    issuer: DevIssuer

    def set_clock(self, at: datetime) -> None:
        """Move every service's clock, and the emulator's (its webhooks are signed with its time)."""
        self.clock.set(at)
        self.emulator.inspect("POST", "/clock", {"now": at.isoformat()})


async def _own_invoice_numbers(database_url: str) -> None:
    """Give this stack invoice numbers no other test's invoicing database hands out.

    Invoice ids are unique per invoicing database, as in production. Tests that run their own
    invoicing databases publish to the same broker, so without this the stack's procountor-sync
    would take their `INV-100001` for its own and skip ours as already delivered.
    """
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            start = 10_000_000 + secrets.randbelow(80_000_000)
            await connection.execute(
                text(f"ALTER SEQUENCE invoicing.invoice_number_seq RESTART WITH {start}")
            )
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(scope="package")
async def stack(kafka: KafkaTarget, database_url: str, oidc_issuer: DevIssuer) -> AsyncIterator[Stack]:
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    for location in ("metering", "invoicing", "partners", "procountor_sync"):
        await migrate(database_url, f"{location}:migrations")
    await _own_invoice_numbers(database_url)
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=HELSINKI))
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers,
        "kafka_enable_idempotence": kafka.enable_idempotence,
        "database_url": SecretStr(database_url),
        "outbox_idle_seconds": 0.1,
        # Gauges read from the tables (pending dead letters, the billing run) twice a second.
        "metrics_interval_seconds": 0.5,
        "auth_issuer": oidc_issuer.url,
        "auth_docs_client_id": "billing-dev",
    }
    # The emulator runs as a process of its own (as Procountor does); procountor-sync is served over
    # real HTTP too, since the emulator pushes payment webhooks to it.
    sync_port = free_port()
    with EmulatorProcess() as emulator:
        emulator.inspect("POST", "/clock", {"now": clock.now().isoformat()})
        sync_settings = ProcountorSyncSettings(
            **common,
            procountor_base_url=emulator.api_url,
            procountor_client_id=SecretStr(LOCAL_CLIENT_ID),
            procountor_client_secret=SecretStr(LOCAL_CLIENT_SECRET),
            procountor_api_key=SecretStr(LOCAL_API_KEY),
            delivery_interval_seconds=0.2,
            retry_initial_seconds=0.5,
            retry_max_seconds=2.0,
            poll_interval_seconds=0.5,
            webhook_secret=SecretStr("e2e-webhook-secret-0123456789"),
            webhook_public_url=f"http://127.0.0.1:{sync_port}/webhooks/procountor",
            # The test clock stands still while the emulator's runs on: a wide replay window.
            webhook_tolerance_seconds=3600,
        )
        apps = {
            "metering": create_metering(MeteringSettings(**common, auto_close=False), clock),
            "invoicing": create_invoicing(InvoicingSettings(**common), clock),
            "partners": create_partners(PartnersSettings(**common), clock),
            "procountor-sync": create_sync(sync_settings, clock),
        }
        everything = oidc_issuer.all_roles_auth()
        async with (
            running(apps["metering"], auth=everything) as metering,
            running(apps["invoicing"], auth=everything) as invoicing,
            running(apps["partners"], auth=everything) as partners,
            running(apps["procountor-sync"], auth=everything) as sync,
            serve_http(apps["procountor-sync"], port=sync_port),
            httpx.AsyncClient(base_url=emulator.url) as procountor,
            Publisher(kafka) as publisher,
        ):
            yield Stack(
                metering,
                invoicing,
                partners,
                sync,
                procountor,
                publisher,
                clock,
                kafka,
                apps,
                emulator,
                oidc_issuer,
            )
