"""Invoicing running in process on the real broker and a database of its own, for the contract tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stdnum.fi import ytunnus

from billing_contracts.references import first_business_id_from
from billing_contracts.registry import TOPICS, all_topic_names
from devstack.infra import KafkaTarget, async_url, create_database, drop_database, ensure_topics
from devstack.issuer import DevIssuer
from devstack.testing import Publisher, migrate, read_topic, running, wait_until
from invoicing import tables as t
from invoicing.app import create_app
from invoicing.calendar import HELSINKI
from invoicing.settings import InvoicingSettings
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory

MAIN_USER: dict[str, Any] = {"person_name": "Maija Pääkäyttäjä", "role": "main_user"}
SIGNATORY: dict[str, Any] = {"person_name": "Sakari Allekirjoittaja", "is_signatory": True}
BOOKKEEPER: dict[str, Any] = {"person_name": "Kalle Kirjanpitäjä", "role": "bookkeeper"}
ADDRESS: dict[str, Any] = {"street": "Mannerheimintie 1", "postal_code": "00100", "city": "Helsinki"}
EINVOICE: dict[str, Any] = {"address": "003720774740", "operator": "003723327487"}


def helsinki(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=HELSINKI)


@functools.cache
def business_id(n: int) -> str:
    """A valid business ID of its own for each n, from 3000000-x up (other tests use 2000000-x)."""
    candidate = first_business_id_from(3000000 + 5 * n)
    assert ytunnus.is_valid(candidate)  # python-stdnum agrees with our check digit
    return candidate


def new_environment() -> str:
    return f"env-{uuid.uuid4().hex[:10]}"


@dataclass
class ContractStack:
    http: httpx.AsyncClient
    publisher: Publisher
    clock: FixedClock
    kafka: KafkaTarget
    sessions: async_sessionmaker[AsyncSession]
    issuer: DevIssuer

    async def sign(self, environment_id: str, company: int, **fields: Any) -> dict[str, Any]:
        """Sign over the API: a Kevyt contract from 1 January 2026 unless `fields` say otherwise."""
        body = {
            "environment_id": environment_id,
            "business_id": business_id(company),
            "company_name": f"Asiakas {company} Oy",
            "package": "kevyt",
            "production_date": "2026-01-01",
            "accounting_firm_id": "firm-a",
            "accounting_firm_business_id": business_id(900),
            "billing_address": ADDRESS,
            "billing_channel": "einvoice",
            "einvoice_address": EINVOICE,
        } | fields
        response = await self.http.post("/contracts", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def contract(self, contract_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/contracts/{contract_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def terms(self, contract_id: str, month: str) -> dict[str, Any]:
        response = await self.http.get(f"/contracts/{contract_id}/terms/{month}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def history(self, contract_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/contracts/{contract_id}/history")
        response.raise_for_status()
        body: list[dict[str, Any]] = response.json()
        return body

    async def changes_named(self, contract_id: str, change: str) -> list[dict[str, Any]]:
        return [h for h in await self.history(contract_id) if h["change"] == change]

    async def wait_for_change(self, contract_id: str, change: str, *, count: int = 1) -> list[dict[str, Any]]:
        async def found() -> list[dict[str, Any]] | None:
            response = await self.http.get(f"/contracts/{contract_id}/history")
            if response.status_code != 200:
                return None
            rows = [h for h in response.json() if h["change"] == change]
            return rows if len(rows) >= count else None

        return await wait_until(found, what=f"{change} on {contract_id}")

    async def announced(
        self, topic: str, matches: Callable[[dict[str, Any]], bool], *, count: int = 1
    ) -> list[dict[str, Any]]:
        """Messages on `topic` that match, once at least `count` of them are there."""
        found = await read_topic(
            self.kafka, topic, until=lambda ms: sum(1 for m in ms if matches(m)) >= count
        )
        return [m for m in found if matches(m)]

    async def dead_letters(self, event_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(t.runtime_tables.dead_letters).where(
                    t.runtime_tables.dead_letters.c.event_id == str(event_id)
                )
            )
            return [dict(r) for r in rows.mappings()]


@contextlib.asynccontextmanager
async def contract_stack(
    kafka: KafkaTarget, postgres_admin_url: str, issuer: DevIssuer, *, now: dt.datetime
) -> AsyncIterator[ContractStack]:
    """Invoicing with its consumers, relay and API on the session broker and a fresh database.

    Its HTTP client sends a token of the dev client holding every role (`dev-all-roles`); tests of
    who is audited pass a token of their own."""
    partitions = {spec.name: spec.partitions for spec in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    name = f"contracts_{uuid.uuid4().hex[:12]}"
    url = async_url(create_database(postgres_admin_url, name))
    try:
        await migrate(url, "invoicing:migrations")
        clock = FixedClock(now)
        settings = InvoicingSettings(
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            kafka_enable_idempotence=kafka.enable_idempotence,
            database_url=url,  # type: ignore[arg-type]
            outbox_idle_seconds=0.1,
            auth_issuer=issuer.url,
        )
        engine = create_engine(url, pool_size=2)
        try:
            async with (
                running(create_app(settings, clock), auth=issuer.all_roles_auth()) as http,
                Publisher(kafka) as publisher,
            ):
                yield ContractStack(http, publisher, clock, kafka, session_factory(engine), issuer)
        finally:
            await engine.dispose()
    finally:
        drop_database(postgres_admin_url, name)
