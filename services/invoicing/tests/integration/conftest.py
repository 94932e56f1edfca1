"""Fixtures of the billing-run tests: a freshly migrated invoicing database per test, and a seeder."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stdnum.fi import ytunnus

from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    EInvoiceAddress,
    PackageCode,
    PayerKind,
    PostalAddress,
    Requester,
    TerminationNoticeGivenV1,
)
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFigures, UsageFinalizedV1
from billing_contracts.partners import PartnerTier, PartnerTierChangedV1
from billing_contracts.references import first_business_id_from
from devstack.infra import async_url, database_url, drop_database
from devstack.testing import migrate
from invoicing import tables as t
from invoicing.billing.consumers import PartnerTierIntake, UsageIntake
from invoicing.billing.service import RunReport, run_billing
from invoicing.billing.views import held_of_payer, list_invoice_views
from invoicing.calendar import HELSINKI
from invoicing.contracts.consumers import ContractIntake
from invoicing.prices.domain import PriceBook
from invoicing.prices.loader import sample_price_book
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory

_BUSINESS_IDS: list[str] = []


def business_id(n: int) -> str:
    """The n-th valid Finnish business ID (Y-tunnus) from 2000000-x: increasing in n."""
    body = int(_BUSINESS_IDS[-1][:7]) + 1 if _BUSINESS_IDS else 2000000
    while len(_BUSINESS_IDS) <= n:
        candidate = first_business_id_from(body)
        assert ytunnus.is_valid(candidate)  # python-stdnum agrees with our check digit
        _BUSINESS_IDS.append(candidate)
        body = int(candidate[:7]) + 1
    return _BUSINESS_IDS[n]


async def _admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def invoicing_template(postgres_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per session; each test gets a copy of it (fast)."""
    import asyncio

    name = f"tmpl_invoicing_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(migrate(async_url(database_url(postgres_admin_url, name)), "invoicing:migrations"))
        yield name
    finally:
        drop_database(postgres_admin_url, name)


@pytest_asyncio.fixture
async def billing_db(postgres_admin_url: str, invoicing_template: str) -> AsyncIterator[str]:
    """A migrated invoicing database of this test's own (a run bills every payer in it)."""
    name = f"billing_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{invoicing_template}"')
    try:
        yield async_url(database_url(postgres_admin_url, name))
    finally:
        drop_database(postgres_admin_url, name)


MAIN_USER = Requester(person_name="Maija Pääkäyttäjä", role="main_user")


def figures(**counts: Any) -> UsageFigures:
    """Metering's figures, zero where not given."""
    zero: dict[str, Any] = {
        "vouchers": 0,
        "payees": 0,
        "einvoices_sent": 0,
        "einvoices_received": 0,
        "billable_users": 0,
        "signatures": 0,
    }
    return UsageFigures(**(zero | counts))


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=HELSINKI)


@dataclass
class Billing:
    """Drives invoicing's use cases directly (no broker): contracts, usage, closes, tiers, runs."""

    sessions: async_sessionmaker[AsyncSession]
    clock: FixedClock
    price_book: PriceBook = field(default_factory=sample_price_book)

    async def _apply(self, use_case: Any, *events: Any) -> list[Any]:
        async with self.sessions.begin() as session:
            rejections: list[Any] = await use_case(session, list(events))
        return rejections

    async def sign(
        self,
        environment_id: str,
        company: int,
        *,
        package: PackageCode = PackageCode.KEVYT,
        production_date: dt.date = dt.date(2026, 1, 1),
        firm: int | None = None,
        firm_pays: bool = False,
        own_use: bool = False,
        reseller: str | None = None,
        name: str | None = None,
    ) -> str:
        """Sign a contract; returns the payer id (the company's or the paying firm's business ID)."""
        firm_business_id = business_id(firm) if firm is not None else None
        command = ContractSignedV1(
            event_id=uuid.uuid4(),
            occurred_at=self.clock.now(),
            producer="test",
            environment_id=environment_id,
            business_id=business_id(company),
            company_name=name or f"Asiakas {company} Oy",
            package=package,
            production_date=production_date,
            payer=PayerKind.ACCOUNTING_FIRM if firm_pays else PayerKind.COMPANY,
            accounting_firm_id=None if firm is None else f"firm-{firm}",
            accounting_firm_business_id=firm_business_id,
            reseller_partner_id=reseller,
            own_use=own_use,
            billing_address=PostalAddress(street="Mannerheimintie 1", postal_code="00100", city="Helsinki"),
            billing_channel=BillingChannel.EINVOICE,
            einvoice_address=EInvoiceAddress(address="003712345678", operator="003723327487"),
        )
        assert await self._apply(ContractIntake(self.clock), command) == []
        return firm_business_id if firm_pays and firm_business_id else business_id(company)

    async def terminate(self, environment_id: str, notice_at: dt.datetime) -> None:
        command = TerminationNoticeGivenV1(
            event_id=uuid.uuid4(),
            occurred_at=notice_at,
            producer="test",
            environment_id=environment_id,
            notice_given_at=notice_at,
            requested_by=MAIN_USER,
        )
        assert await self._apply(ContractIntake(self.clock), command) == []

    async def usage(self, environment_id: str, month: str, **counts: Any) -> None:
        event = UsageFinalizedV1(
            event_id=uuid.uuid4(),
            occurred_at=self.clock.now(),
            producer="metering",
            environment_id=environment_id,
            month=month,
            usage=figures(**counts),
        )
        await self._apply(UsageIntake(self.clock), event)

    async def close(self, month: str) -> None:
        async with self.sessions() as session:
            count = len(
                (
                    await session.execute(
                        select(t.monthly_usage.c.environment_id).where(t.monthly_usage.c.month == month)
                    )
                ).all()
            )
        event = MonthClosedV1(
            event_id=uuid.uuid4(),
            occurred_at=self.clock.now(),
            producer="metering",
            month=month,
            environment_count=count,
        )
        await self._apply(UsageIntake(self.clock), event)

    async def adjust(
        self, environment_id: str, month: str, number: int, *, usage: dict[str, Any], previous: dict[str, Any]
    ) -> None:
        event = UsageAdjustedV1(
            event_id=uuid.uuid4(),
            occurred_at=self.clock.now(),
            producer="metering",
            environment_id=environment_id,
            month=month,
            adjustment_no=number,
            usage=figures(**usage),
            previous=figures(**previous),
        )
        await self._apply(UsageIntake(self.clock), event)

    async def tier(self, firm: int, tier: PartnerTier, effective_month: str) -> None:
        event = PartnerTierChangedV1(
            event_id=uuid.uuid4(),
            occurred_at=self.clock.now(),
            producer="partners",
            firm_id=f"firm-{firm}",
            old_tier=None,
            new_tier=tier,
            reason="test",
            end_customers=0,
            certified_experts=0,
            authorized_experts=0,
            effective_month=effective_month,
        )
        await self._apply(PartnerTierIntake(), event)

    async def run(self, run_date: dt.date, **kwargs: Any) -> RunReport:
        self.clock.set(at(run_date, 6))
        return await run_billing(self.sessions, self.clock, self.price_book, run_date, **kwargs)

    async def invoices(self, **filters: Any) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            return await list_invoice_views(session, limit=1000, **filters)

    async def held(self, payer_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            return await held_of_payer(session, payer_id)

    async def count(self, table: Any) -> int:
        async with self.sessions() as session:
            return len((await session.execute(select(table))).all())


@pytest_asyncio.fixture
async def billing(billing_db: str) -> AsyncIterator[Billing]:
    engine = create_engine(billing_db, pool_size=4)
    try:
        yield Billing(session_factory(engine), FixedClock(at(dt.date(2026, 1, 1), 8)))
    finally:
        await engine.dispose()
