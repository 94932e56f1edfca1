"""procountor-sync over a real broker and PostgreSQL, the Procountor emulator in a process of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import update

from billing_contracts.registry import TOPICS, all_topic_names
from devstack.broker import free_port
from devstack.infra import KafkaTarget, async_url, create_database, drop_database, ensure_topics
from devstack.issuer import DevIssuer
from devstack.procountor import API_KEY, CLIENT_ID, CLIENT_SECRET, EmulatorProcess
from devstack.testing import Publisher, migrate, running, serve_http, wait_until
from procountor_sync import tables
from procountor_sync.app import create_app
from procountor_sync.service import ProcountorSync
from procountor_sync.settings import ProcountorSyncSettings
from service_runtime.clock import SystemClock

from ..builders import invoice, unique_business_id

__all__ = ["invoice", "unique_business_id"]

WEBHOOK_SECRET = "webhook-secret-of-the-tests-0042"
CREDENTIAL_KEY = "bqTcbTtWhzPfKHBqxrMRz5gBeo2KKCZBuV8eqMfXcyg="


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    # A generous limit: these tests are about behaviour; the shared limit has its own test and benchmark.
    # Test-only auto-consent: these tests follow the key login's redirects with httpx, no form
    # (tests/browser signs in on the form in a real browser).
    with EmulatorProcess(rate_limit=200, env={"PROCOUNTOR_EMULATOR_KEYLOGIN_AUTO_CONSENT": "1"}) as process:
        yield process


@pytest.fixture(scope="module")
def sync_database(postgres_admin_url: str) -> Iterator[str]:
    """A database of this module's own: procountor-sync's caches never meet another emulator's ids."""
    name = f"sync_{uuid.uuid4().hex[:10]}"
    url = async_url(create_database(postgres_admin_url, name))
    yield url
    drop_database(postgres_admin_url, name)


def settings_for(
    database_url: str, kafka: KafkaTarget, emulator: EmulatorProcess, **overrides: Any
) -> ProcountorSyncSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers,
        "kafka_enable_idempotence": kafka.enable_idempotence,
        "database_url": SecretStr(database_url),
        "outbox_idle_seconds": 0.1,
        "procountor_base_url": emulator.api_url,
        "procountor_client_id": SecretStr(CLIENT_ID),
        "procountor_client_secret": SecretStr(CLIENT_SECRET),
        "procountor_api_key": SecretStr(API_KEY),
        "rate_limit_per_second": 150,
        "delivery_lease_seconds": 2.0,
        "delivery_interval_seconds": 0.1,
        "retry_initial_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "request_attempts": 2,
        "request_backoff_max_seconds": 0.2,
        "poll_interval_seconds": 0.5,
        "webhook_secret": SecretStr(WEBHOOK_SECRET),
        "credential_key": SecretStr(CREDENTIAL_KEY),
        "log_format": "console",
    }
    return ProcountorSyncSettings(**(values | overrides))


@dataclass
class SyncStack:
    http: httpx.AsyncClient
    url: str
    emulator: EmulatorProcess
    sync: ProcountorSync
    publisher: Publisher
    kafka: KafkaTarget
    database_url: str
    issuer: DevIssuer


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    kafka: KafkaTarget, sync_database: str, emulator: EmulatorProcess, oidc_issuer: DevIssuer
) -> AsyncIterator[SyncStack]:
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    await migrate(sync_database, "procountor_sync:migrations")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = settings_for(
        sync_database, kafka, emulator, webhook_public_url=f"{url}/webhooks/procountor",
        keylogin_redirect_uri=f"{url}/procountor/key-login/callback", auth_issuer=oidc_issuer.url,
    )  # fmt: skip
    app = create_app(settings, SystemClock())
    async with (
        running(app, auth=oidc_issuer.all_roles_auth()) as http,
        serve_http(app, port=port),
        Publisher(kafka) as publisher,
    ):
        await wait_until(
            _webhook_registered(emulator), within=30, what="the webhook subscription at Procountor"
        )
        yield SyncStack(http, url, emulator, app.state.sync, publisher, kafka, sync_database, oidc_issuer)
        # Nothing of this module is left for another procountor-sync to pick up.
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(sync_database)
        async with engine.begin() as connection:
            await connection.execute(
                update(tables.deliveries)
                .where(tables.deliveries.c.status == "pending")
                .values(status="cancelled")
            )
        await engine.dispose()


def _webhook_registered(emulator: EmulatorProcess) -> Any:
    async def check() -> bool:
        return bool(emulator.api("GET", "/webhooks")["results"])

    return check
