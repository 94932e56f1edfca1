"""The partner program across services over Kafka: contract events → tier → own-use discount → commission statement."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    PackageCode,
    PayerKind,
    PostalAddress,
)
from billing_contracts.partners import AccountingFirmRegisteredV1, ExpertCertifiedV1, ExpertSoftware
from devstack.testing import wait_until
from invoicing.calendar import HELSINKI, YearMonth, run_day
from invoicing.prices.loader import sample_price_book

from ..conftest import Stack
from .test_billing_month import unique_business_id

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: A month no other test bills, so that its billing run and statements are this test's alone.
MONTH = YearMonth(2028, 3)
RUN_DATE = run_day(MONTH.next())
CENT = Decimal("0.01")


def at(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(MONTH.year, MONTH.month, day, hour, tzinfo=HELSINKI)


def envelope(when: dt.datetime, producer: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": when, "producer": producer}


def signed(
    environment: str, business_id: str, firm: str, *, reseller: str | None = None, own_use: bool = False
) -> ContractSignedV1:
    return ContractSignedV1(
        **envelope(at(2), "crm"),
        environment_id=environment,
        business_id=business_id,
        company_name=f"Yritys {environment}"[:80],
        package=PackageCode.KEVYT,
        production_date=MONTH.first_day,
        payer=PayerKind.COMPANY,
        accounting_firm_id=firm,
        reseller_partner_id=reseller,
        own_use=own_use,
        billing_address=PostalAddress(street="Hämeenkatu 1", postal_code="33100", city="Tampere"),
        billing_channel=BillingChannel.EMAIL,
        billing_email="laskut@example.fi",
    )


async def test_the_25th_customer_and_first_expert_make_a_firm_gold_its_own_bill_minus_50_and_its_commission_to_the_cent(
    stack: Stack, database_url: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    firm, firm_business_id = f"numero-{suffix}", unique_business_id()
    start = stack.clock.now()
    stack.clock.set(at(2))
    try:
        # The partner CRM registers the firm; invoicing signs its clients and its own bookkeeping.
        await stack.publisher.publish(
            AccountingFirmRegisteredV1(
                **envelope(at(2), "partner-crm"),
                firm_id=firm,
                business_id=firm_business_id,
                firm_name="Tilitoimisto Numero Oy",
                agreement_signed_on=dt.date(2028, 1, 10),
            )
        )
        clients = [(f"c{n}-{suffix}", unique_business_id()) for n in range(25)]
        resold = {env for env, _ in clients[:3]}  # the firm resold three of them the software (P-08)
        own = f"own-{suffix}"
        await stack.publisher.publish(
            signed(own, firm_business_id, firm, own_use=True),
            *(signed(env, bid, firm, reseller=firm if env in resold else None) for env, bid in clients[:24]),
        )
        await wait_until(lambda: _firm(stack, firm, end_customers=24), what="24 end customers counted (P-03)")
        view = await _firm(stack, firm, end_customers=24)
        assert view is not None
        assert view["tier"] == "silver"

        # During March: the 25th end customer and the firm's first certified expert (P-02: Gold).
        stack.clock.set(at(10))
        await stack.publisher.publish(
            signed(*clients[24], firm),
            ExpertCertifiedV1(
                **envelope(at(10), "training"),
                firm_id=firm,
                expert_id=f"expert-{suffix}",
                software=ExpertSoftware.PROCOUNTOR,
                passed_on=dt.date(2028, 3, 9),
            ),
        )
        gold = await wait_until(lambda: _firm(stack, firm, tier="gold"), what="the firm Gold")
        assert gold["counts"] == {"end_customers": 25, "certified_experts": 1, "authorized_experts": 0}
        history = (await stack.partners.get(f"/firms/{firm}/tiers")).json()["changes"]
        assert (history[-1]["new_tier"], history[-1]["effective_month"]) == ("gold", "2028-03")  # P-07
        await wait_until(lambda: _invoicing_knows(database_url, firm), what="invoicing holds the Gold tier")

        # The month ends; metering closes it; invoicing bills it on April's first business day.
        stack.clock.set(dt.datetime.combine(RUN_DATE, dt.time(6), tzinfo=HELSINKI))
        assert (await stack.metering.post(f"/months/{MONTH}/close")).status_code == 200

        async def billed() -> dict[str, Any] | None:
            response = await stack.invoicing.post("/billing-runs", json={"run_date": RUN_DATE.isoformat()})
            return response.json() if response.status_code == 200 else None

        run = await wait_until(billed, what="the March run accepted")
        assert not run["failures"]

        invoices = (await stack.invoicing.get("/invoices", params={"period": str(MONTH)})).json()
        by_payer = {i["payer_business_id"]: i for i in invoices}
        fee = sample_price_book().price_list_for(MONTH).package("kevyt").monthly_fee
        # P-07: the firm's own environment's software charges −50 % from the month it became Gold.
        own_invoice = by_payer[firm_business_id]
        lines = [(ln["product_code"], Decimal(ln["net"])) for ln in own_invoice["lines"]]
        half = (fee * Decimal("0.5")).quantize(CENT, rounding=ROUND_HALF_UP)
        assert lines == [("KEVYT-MONTHLY", fee), ("OWN-USE-DISCOUNT", -half)]
        assert Decimal(own_invoice["total_net"]) == fee - half

        # P-08: the statement of March lists every invoice of the three resold clients, to the cent.
        resold_invoices = {
            by_payer[bid]["invoice_number"]: Decimal(by_payer[bid]["total_net"])
            for env, bid in clients
            if env in resold
        }
        assert set(resold_invoices.values()) == {fee}
        summary = await wait_until(
            lambda: _statement(stack, firm), within=60, what="the firm's March statement"
        )
        statement = (await stack.partners.get(f"/commission-statements/{summary['statement_id']}")).json()
        assert {i["number"]: Decimal(i["software_net"]) for i in statement["invoices"]} == resold_invoices
        total = sum(resold_invoices.values(), Decimal(0))
        assert Decimal(statement["software_net_total"]) == total
        assert Decimal(statement["commission_amount"]) == (total * Decimal("0.10")).quantize(
            CENT, rounding=ROUND_HALF_UP
        )
        assert (statement["month"], statement["commission_rate_percent"]) == (str(MONTH), "10.00")
        csv = await stack.partners.get(f"/commission-statements/{summary['statement_id']}/csv")
        assert csv.status_code == 200
        assert f"{total:.2f}".replace(".", ",") in csv.content.decode("utf-8-sig")
    finally:
        stack.clock.set(start)


async def _firm(
    stack: Stack, firm: str, *, tier: str | None = None, end_customers: int | None = None
) -> dict[str, Any] | None:
    view: dict[str, Any] = (await stack.partners.get(f"/firms/{firm}")).json()
    if tier is not None and view["tier"] != tier:
        return None
    if end_customers is not None and view["end_customers"] != end_customers:
        return None
    return view


async def _invoicing_knows(database_url: str, firm: str) -> bool:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            tier = await connection.scalar(
                text("SELECT tier FROM invoicing.partner_tiers WHERE firm_id = :f AND effective_month = :m"),
                {"f": firm, "m": str(MONTH)},
            )
    finally:
        await engine.dispose()
    return bool(tier == "gold")


async def _statement(stack: Stack, firm: str) -> dict[str, Any] | None:
    found = (
        await stack.partners.get("/commission-statements", params={"month": str(MONTH), "partner_id": firm})
    ).json()
    return found[0] if found else None
