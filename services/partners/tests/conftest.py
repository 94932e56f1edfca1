"""Fixtures of partners' tests: the service running in process on the real broker and database, and message builders."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.contracts import PackageCode
from billing_contracts.invoicing import ContractChangedV1, ContractStatus
from billing_contracts.partners import (
    AccountingFirmRegisteredV1,
    AuthorizationPart,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    ExpertSoftware,
)
from billing_contracts.references import first_business_id_from
from billing_contracts.registry import TOPICS, all_topic_names
from devstack.infra import KafkaTarget, ensure_topics
from devstack.issuer import DevIssuer
from devstack.testing import Publisher, migrate, running, wait_until
from partners.app import create_app
from partners.settings import PartnersSettings
from service_runtime.clock import HELSINKI, FixedClock
from service_runtime.database import create_engine, session_factory

#: The tests' "now": 20 November 2026 in Helsinki, so tier changes take effect in 2026-11 (P-07).
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=HELSINKI)


def business_id(seed: int) -> str:
    """A valid Finnish business ID near `seed` (check digit per the Y-tunnus rule)."""
    return first_business_id_from(seed)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def envelope(at: dt.datetime = NOW, producer: str = "test") -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": producer}


def registered(
    firm: str, *, signed_on: dt.date = dt.date(2026, 1, 15), name: str | None = None
) -> AccountingFirmRegisteredV1:
    return AccountingFirmRegisteredV1(
        **envelope(producer="partner-crm"),
        firm_id=firm,
        business_id=business_id(uuid.uuid4().int % 9_000_000 + 1_000_000),
        firm_name=name or f"Tilitoimisto {firm}",
        agreement_signed_on=signed_on,
    )


def certified(firm: str, expert: str, *, on: dt.date = dt.date(2026, 9, 1)) -> ExpertCertifiedV1:
    return ExpertCertifiedV1(
        **envelope(producer="training"),
        firm_id=firm,
        expert_id=expert,
        software=ExpertSoftware.PROCOUNTOR,
        passed_on=on,
    )


def authorization(
    firm: str, expert: str, part: AuthorizationPart, on: dt.date
) -> ExpertAuthorizationPassedV1:
    return ExpertAuthorizationPassedV1(
        **envelope(producer="training"),
        firm_id=firm,
        expert_id=expert,
        software=ExpertSoftware.PROCOUNTOR,
        part=part,
        passed_on=on,
    )


def contract_state(
    environment: str,
    firm: str | None,
    *,
    status: ContractStatus = ContractStatus.ACTIVE,
    at: dt.datetime = NOW - dt.timedelta(days=30),
    package: PackageCode = PackageCode.KEVYT,
    reseller: str | None = None,
    own_use: bool = False,
) -> ContractChangedV1:
    return ContractChangedV1(
        **envelope(at, producer="invoicing"),
        contract_id=f"C-{environment}",
        environment_id=environment,
        business_id=business_id(abs(hash(environment)) % 9_000_000 + 1_000_000),
        company_name=f"Asiakas {environment}",
        status=status,
        package=package,
        production_date=dt.date(2026, 1, 1),
        accounting_firm_id=firm,
        reseller_partner_id=reseller,
        own_use=own_use,
        change="signed",
    )


@dataclass
class Partners:
    http: httpx.AsyncClient
    publisher: Publisher
    clock: FixedClock
    kafka: KafkaTarget
    sessions: async_sessionmaker[AsyncSession]
    issuer: DevIssuer

    async def firm(self, firm_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/firms/{firm_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def wait_for_tier(
        self, firm_id: str, tier: str | None, *, end_customers: int | None = None
    ) -> dict[str, Any]:
        """Wait until the firm's *announced* tier (the last change recorded) is `tier`."""

        async def announced() -> dict[str, Any] | None:
            history = (await self.http.get(f"/firms/{firm_id}/tiers")).json()["changes"]
            view = await self.firm(firm_id)
            last = history[-1] if history else None
            now = last["new_tier"] if last and last["in_program"] else None
            if now == tier and (end_customers is None or view["end_customers"] == end_customers):
                return view
            return None

        return await wait_until(announced, within=30, what=f"{firm_id} announced as {tier}")

    async def dead_letters(self, *event_ids: uuid.UUID) -> dict[str, tuple[str, str]]:
        """Dead letters of these event ids: event id → (failure, reason)."""
        async with self.sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT event_id, failure, reason FROM partners.dead_letters WHERE event_id = ANY(:ids)"
                ),
                {"ids": [str(e) for e in event_ids]},
            )
            return {r.event_id: (r.failure, r.reason) for r in rows}

    async def parked(self) -> dict[str, dict[str, Any]]:
        """The inputs waiting now (`GET /parked-inputs`, as an operator sees them), by event id."""
        response = await self.http.get("/parked-inputs")
        response.raise_for_status()
        return {p["event_id"]: p for p in response.json()}

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.sessions() as session:
            return await session.scalar(text(sql), params)


@pytest_asyncio.fixture(scope="module")
async def partners(kafka: KafkaTarget, database_url: str, oidc_issuer: DevIssuer) -> AsyncIterator[Partners]:
    # Module scope, not package: these test directories are not Python packages, so a "package"
    # fixture would live for the whole session and its consumers (this clock) would share the
    # consumer groups with the end-to-end stack's partners (another clock) in tests/.
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    await migrate(database_url, "partners:migrations")
    clock = FixedClock(NOW)
    settings = PartnersSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.enable_idempotence,
        database_url=database_url,  # type: ignore[arg-type]
        outbox_idle_seconds=0.1,
        auth_issuer=oidc_issuer.url,
        # The expiry sweep and the gauges often, so that a test moving the clock sees them soon.
        parked_sweep_every_seconds=0.2,
        metrics_interval_seconds=0.2,
    )
    engine = create_engine(database_url, pool_size=2)
    try:
        async with (
            running(create_app(settings, clock), auth=oidc_issuer.all_roles_auth()) as http,
            Publisher(kafka) as publisher,
        ):
            yield Partners(
                http=http,
                publisher=publisher,
                clock=clock,
                kafka=kafka,
                sessions=session_factory(engine),
                issuer=oidc_issuer,
            )
    finally:
        await engine.dispose()


def money(value: str) -> Decimal:
    return Decimal(value)
