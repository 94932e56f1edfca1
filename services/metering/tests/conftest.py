"""Fixtures of metering's tests: the service running in process on the real broker and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest_asyncio

from billing_contracts.registry import TOPICS, all_topic_names
from devstack.infra import KafkaTarget, ensure_topics
from devstack.issuer import DevIssuer
from devstack.testing import Publisher, migrate, running
from metering.app import create_app
from metering.domain import HELSINKI
from metering.settings import MeteringSettings
from service_runtime.clock import FixedClock


@dataclass
class Metering:
    http: httpx.AsyncClient
    publisher: Publisher
    clock: FixedClock
    kafka: KafkaTarget

    async def usage(self, environment_id: str, month: str) -> dict[str, object]:
        response = await self.http.get(f"/environments/{environment_id}/usage/{month}")
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


@pytest_asyncio.fixture(scope="module")
async def metering(kafka: KafkaTarget, database_url: str, oidc_issuer: DevIssuer) -> AsyncIterator[Metering]:
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    await migrate(database_url, "metering:migrations")
    clock = FixedClock(datetime(2026, 11, 20, 12, 0, tzinfo=HELSINKI))
    settings = MeteringSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.enable_idempotence,
        database_url=database_url,  # type: ignore[arg-type]
        auto_close=False,
        outbox_idle_seconds=0.1,
        auth_issuer=oidc_issuer.url,
    )
    async with (
        running(create_app(settings, clock), auth=oidc_issuer.all_roles_auth()) as http,
        Publisher(kafka) as publisher,
    ):
        yield Metering(http=http, publisher=publisher, clock=clock, kafka=kafka)
