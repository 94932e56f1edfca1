"""Metering and invoicing on the real broker and PostgreSQL: a month billed through Kafka and the API.

The CronJob's command waits for metering's month close, reruns and concurrent calls never bill
twice, a late event becomes a labelled correction next month, and every line's specification
lists what is behind it (B-03, B-04, B-06, B-15, B-19, P-07).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import func, select

from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    EInvoiceAddress,
    PackageCode,
    PostalAddress,
)
from billing_contracts.partners import PartnerTier, PartnerTierChangedV1
from billing_contracts.procountor import DeliveryStatus as DeliveredStatus
from billing_contracts.procountor import (
    InvoiceDeliveredV1,
    InvoiceDeliveryFailedV1,
    InvoicePaymentStatusChangedV1,
    PaymentReceivedV1,
    ProcountorPaymentStatus,
)
from billing_contracts.registry import TOPICS, all_topic_names
from billing_contracts.usage import DocumentKind, SignatureCompletedV1, VoucherCreatedV1
from devstack.infra import KafkaTarget, async_url, create_database, drop_database, ensure_topics
from devstack.issuer import DevIssuer
from devstack.testing import Publisher, migrate, read_topic, running, serve_http, wait_until
from invoicing import tables as t
from invoicing.__main__ import trigger
from invoicing.app import create_app as create_invoicing
from invoicing.settings import InvoicingSettings
from metering.app import create_app as create_metering
from metering.settings import MeteringSettings
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory

from .conftest import at, business_id

pytestmark = pytest.mark.integration

NOV_2 = dt.date(2026, 11, 2)
DEC_1 = dt.date(2026, 12, 1)


@dataclass
class Services:
    metering: httpx.AsyncClient
    invoicing: httpx.AsyncClient
    invoicing_url: str
    publisher: Publisher
    clock: FixedClock
    kafka: KafkaTarget
    database_url: str
    issuer: DevIssuer


@pytest_asyncio.fixture(scope="module")
async def services(
    kafka: KafkaTarget, postgres_admin_url: str, oidc_issuer: DevIssuer
) -> AsyncIterator[Services]:
    """Metering and invoicing as processes run them, on a database of this module's own."""
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    name = f"billing_kafka_{uuid.uuid4().hex[:10]}"
    url = async_url(create_database(postgres_admin_url, name))
    await migrate(url, "metering:migrations")
    await migrate(url, "invoicing:migrations")
    clock = FixedClock(at(dt.date(2026, 10, 1), 8))
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers,
        "kafka_enable_idempotence": kafka.enable_idempotence,
        "database_url": SecretStr(url),
        "outbox_idle_seconds": 0.1,
        "auth_issuer": oidc_issuer.url,
    }
    # Invoicing calls metering with its own client-credentials token (role usage-reader), as deployed.
    invoicing_client: dict[str, Any] = {
        "oauth_token_url": f"{oidc_issuer.url}/token",
        "oauth_client_id": "invoicing",
        "oauth_client_secret": SecretStr("local-invoicing-secret"),
    }
    metering_app = create_metering(MeteringSettings(**common, auto_close=False), clock)
    everything = oidc_issuer.all_roles_auth()
    try:
        async with (
            running(metering_app, auth=everything) as metering,
            serve_http(metering_app) as metering_url,
        ):
            invoicing_app = create_invoicing(
                InvoicingSettings(**common, **invoicing_client, metering_url=metering_url), clock
            )
            async with (
                running(invoicing_app, auth=everything) as invoicing,
                serve_http(invoicing_app) as invoicing_url,
                Publisher(kafka) as publisher,
            ):
                yield Services(metering, invoicing, invoicing_url, publisher, clock, kafka, url, oidc_issuer)
    finally:
        drop_database(postgres_admin_url, name)


async def credit_note_author(s: Services, credit_note_id: str) -> str:
    """`created_by` of a credit note as the database keeps it (the audit)."""
    engine = create_engine(s.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            notes = t.credit_notes.c
            return str(
                await session.scalar(select(notes.created_by).where(notes.credit_note_id == credit_note_id))
            )
    finally:
        await engine.dispose()


def signed(environment_id: str, company: int, package: PackageCode, **kw: Any) -> ContractSignedV1:
    return ContractSignedV1(
        event_id=uuid.uuid4(),
        occurred_at=at(dt.date(2026, 9, 20)),
        producer="crm",
        environment_id=environment_id,
        business_id=business_id(company),
        company_name=f"Asiakas {company} Oy",
        package=package,
        production_date=dt.date(2026, 10, 1),
        billing_address=PostalAddress(street="Aleksanterinkatu 1", postal_code="00100", city="Helsinki"),
        billing_channel=BillingChannel.EINVOICE,
        einvoice_address=EInvoiceAddress(address="003712345678", operator="003723327487"),
        **kw,
    )


def voucher(environment_id: str, voucher_id: str, created_at: dt.datetime) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=created_at,
        producer="procountor",
        environment_id=environment_id,
        voucher_id=voucher_id,
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=created_at,
    )


async def contract_exists(s: Services, environment_id: str) -> bool:
    return (await s.invoicing.get(f"/contracts/C-{environment_id}")).status_code == 200


async def vouchers_counted(s: Services, environment_id: str, month: str, n: int) -> bool:
    body = (await s.metering.get(f"/environments/{environment_id}/usage/{month}")).json()
    return bool(body["usage"]["vouchers"] == n)


async def invoice_of(s: Services, payer_id: str, period: str) -> dict[str, Any] | None:
    found = (await s.invoicing.get("/invoices", params={"payer_id": payer_id, "period": period})).json()
    return found[0] if found else None


async def test_a_month_billed_through_kafka_waits_for_the_close_and_bills_each_payer_once(
    services: Services,
) -> None:
    s = services
    tag = uuid.uuid4().hex[:6]
    env_a, env_b = f"env-a-{tag}", f"env-b-{tag}"
    payer_a, payer_b = business_id(501), business_id(502)
    s.clock.set(at(dt.date(2026, 10, 1), 8))
    await s.publisher.publish(
        signed(env_a, 501, PackageCode.KEVYT), signed(env_b, 502, PackageCode.ALLEKIRJOITUS)
    )
    await wait_until(lambda: contract_exists(s, env_a), what="contract A applied from Kafka")
    await wait_until(lambda: contract_exists(s, env_b), what="contract B applied from Kafka")
    # 13 vouchers in October, the last at 23:59 Helsinki on the 31st (21:59 UTC): still October (B-09).
    created = [at(dt.date(2026, 10, 1 + n)) for n in range(12)] + [
        dt.datetime(2026, 10, 31, 21, 59, tzinfo=dt.UTC)
    ]
    await s.publisher.publish(*(voucher(env_a, f"V{n}", c) for n, c in enumerate(created)))
    # 00:00 Helsinki on 1 November (22:00 UTC on 31 October): November, not billed in October.
    await s.publisher.publish(voucher(env_a, "V-nov", dt.datetime(2026, 10, 31, 22, 0, tzinfo=dt.UTC)))
    await s.publisher.publish(
        SignatureCompletedV1(
            event_id=uuid.uuid4(),
            occurred_at=at(dt.date(2026, 10, 20)),
            producer="allekirjoitus",
            environment_id=env_b,
            signature_id=f"S-{tag}",
            signer_count=1,
            completed_at=at(dt.date(2026, 10, 20)),
        )
    )
    s.clock.set(at(NOV_2, 6))
    await wait_until(lambda: vouchers_counted(s, env_a, "2026-10", 13), what="metering counted October")
    await wait_until(lambda: vouchers_counted(s, env_a, "2026-11", 1), what="metering counted November")

    # The CronJob's command, before metering has closed October: it waits (409) and asks again.
    # It calls with its own client-credentials token (role billing-run-trigger), as in the cluster.
    said: list[str] = []
    cronjob = s.issuer.client_auth("billing-run-cronjob", "local-cronjob-secret")
    waiting = asyncio.create_task(
        asyncio.to_thread(
            trigger, s.invoicing_url, NOV_2, wait_seconds=60, poll_seconds=0.3, say=said.append, auth=cronjob
        )
    )

    async def asked_and_waited() -> bool:
        return any(line.startswith("waiting for metering") for line in said)

    await wait_until(asked_and_waited, what="the trigger waiting for the month close")
    assert await invoice_of(s, payer_a, "2026-10") is None
    assert (await s.metering.post("/months/2026-10/close")).status_code == 200
    assert await asyncio.wait_for(waiting, timeout=60) == 0

    invoice = await invoice_of(s, payer_a, "2026-10")
    assert invoice is not None
    assert [(ln["product_code"], ln["quantity"], ln["net"]) for ln in invoice["lines"]] == [
        ("KEVYT-MONTHLY", "1", "39.00"),
        ("EXTRA-VOUCHER", "3", "5.37"),
    ]
    assert (invoice["total_net"], invoice["total_vat"], invoice["total_gross"]) == ("44.37", "11.31", "55.68")
    assert (invoice["invoice_date"], invoice["due_date"]) == ("2026-11-02", "2026-11-12")
    # B-15: Allekirjoitus's 2.25 € is held, shown as such.
    assert await invoice_of(s, payer_b, "2026-10") is None
    held = (await s.invoicing.get(f"/payers/{payer_b}/held")).json()
    assert (held["held_net"], [h["reason"] for h in held["held"]]) == ("2.25", ["below_minimum"])
    assert (await s.invoicing.get("/held")).json()[payer_b] == "2.25"

    # Two more runs at once and one after: nobody is billed twice.
    again = await asyncio.gather(
        *(s.invoicing.post("/billing-runs", json={"run_date": NOV_2.isoformat()}) for _ in range(2))
    )
    assert [r.status_code for r in again] == [200, 200]
    assert all(r.json()["invoices_issued"] == 0 for r in again)
    assert len((await s.invoicing.get("/invoices", params={"payer_id": payer_a})).json()) == 1
    status = (await s.invoicing.get("/billing-runs/2026-10")).json()
    assert status["status"] == "completed"
    assert status["attempts"] >= 3

    # InvoiceIssuedV1 reaches Kafka for procountor-sync and partners.
    messages = await read_topic(
        s.kafka,
        "invoicing.invoice-issued.v1",
        until=lambda found: any(m["invoice_id"] == invoice["invoice_id"] for m in found),
    )
    (published,) = [m for m in messages if m["invoice_id"] == invoice["invoice_id"]]
    assert published["total_gross"] == "55.68"

    # B-19: everything behind the extra-voucher line, from metering's item list.
    spec = (await s.invoicing.get(f"/invoices/{invoice['invoice_id']}/specification")).json()
    fee, extra = spec["lines"]
    assert (fee["item_kind"], fee["items"]) == (None, [])
    assert extra["item_kind"] == "vouchers"
    assert sorted(i["voucher_id"] for i in extra["items"]) == sorted(f"V{n}" for n in range(13))
    assert all(i["counted"] for i in extra["items"])

    # B-04: a voucher created in October arrives after the close: a correction on November's invoice.
    await s.publisher.publish(voucher(env_a, "V-late", at(dt.date(2026, 10, 30))))

    engine = create_engine(s.database_url, pool_size=1)
    try:
        sessions = session_factory(engine)

        async def adjustment_received() -> bool:
            async with sessions() as session:
                n = await session.scalar(
                    select(func.count()).where(t.usage_adjustments.c.environment_id == env_a)
                )
            return bool(n)

        await wait_until(adjustment_received, what="metering's UsageAdjustedV1 in invoicing")
    finally:
        await engine.dispose()
    s.clock.set(at(DEC_1, 6))
    assert (await s.metering.post("/months/2026-11/close")).status_code == 200

    async def december_run() -> dict[str, Any] | None:
        response = await s.invoicing.post("/billing-runs", json={"run_date": DEC_1.isoformat()})
        return response.json() if response.status_code == 200 else None

    await wait_until(december_run, what="November billed once its close arrived")
    november = await invoice_of(s, payer_a, "2026-11")
    assert november is not None
    assert [
        (ln["product_code"], ln["period_start"], ln["quantity"], ln["net"], ln["is_correction"])
        for ln in november["lines"]
    ] == [
        ("EXTRA-VOUCHER", "2026-10-01", "1", "1.79", True),
        ("KEVYT-MONTHLY", "2026-11-01", "1", "39.00", False),
    ]
    assert november["lines"][0]["description"].startswith("Korjaus / Correction 2026-10")
    october_again = await invoice_of(s, payer_a, "2026-10")
    assert october_again is not None
    assert october_again["lines"] == invoice["lines"]  # never reopened


async def test_tiers_and_payments_arrive_over_kafka_and_a_refund_is_published(services: Services) -> None:
    s = services
    tag = uuid.uuid4().hex[:6]
    env = f"env-own-{tag}"
    firm = 601
    s.clock.set(at(dt.date(2027, 1, 5), 8))
    await s.publisher.publish(
        signed(env, firm, PackageCode.KEVYT, accounting_firm_id=f"firm-{tag}", own_use=True).model_copy(
            update={"production_date": dt.date(2027, 1, 1)}
        ),
        PartnerTierChangedV1(
            event_id=uuid.uuid4(),
            occurred_at=at(dt.date(2027, 1, 10)),
            producer="partners",
            firm_id=f"firm-{tag}",
            old_tier=PartnerTier.GOLD,
            new_tier=PartnerTier.SILVER,
            reason="end customers fell under 25",
            end_customers=20,
            certified_experts=1,
            authorized_experts=0,
            effective_month="2027-01",
        ),
    )
    await wait_until(lambda: contract_exists(s, env), what="own-use contract applied")
    s.clock.set(at(dt.date(2027, 2, 1), 6))
    assert (await s.metering.post("/months/2027-01/close")).status_code == 200

    async def january_invoice() -> dict[str, Any] | None:
        await s.invoicing.post("/billing-runs", json={"run_date": "2027-02-01"})
        found = await invoice_of(s, business_id(firm), "2027-01")
        return (
            found
            if found and any(ln["product_code"] == "OWN-USE-DISCOUNT" for ln in found["lines"])
            else None
        )

    invoice = await wait_until(january_invoice, what="January billed with the Silver discount")
    assert [(ln["product_code"], ln["net"]) for ln in invoice["lines"]] == [
        ("KEVYT-MONTHLY", "39.00"),
        ("OWN-USE-DISCOUNT", "-9.75"),  # P-07: Silver 25 %, in effect for January
    ]
    assert invoice["total_gross"] == "36.71"

    payment = PaymentReceivedV1(
        event_id=uuid.uuid4(),
        occurred_at=at(dt.date(2027, 2, 8)),
        producer="procountor-sync",
        procountor_payment_id=f"PAY-{tag}",
        procountor_invoice_id=f"PC-{tag}",
        payer_business_id=business_id(firm),
        amount=invoice["total_gross"],
        payment_date=dt.date(2027, 2, 8),
        reference_number=invoice["reference_number"],
    )
    twice = payment.model_copy(update={"event_id": uuid.uuid4(), "procountor_payment_id": f"PAY2-{tag}"})
    await s.publisher.publish(payment, twice)  # the second finds no open invoice: B-06

    refunds = await read_topic(
        s.kafka,
        "invoicing.refund-recorded.v1",
        until=lambda found: any(m["payment_event_id"] == str(twice.event_id) for m in found),
    )
    (refund,) = [m for m in refunds if m["payment_event_id"] == str(twice.event_id)]
    assert (refund["amount"], refund["reason"]) == ("36.71", "no open invoice")
    paid = await invoice_of(s, business_id(firm), "2027-01")
    assert paid is not None
    assert paid["status"] == "paid"
    listed = (await s.invoicing.get("/refunds", params={"payer_id": business_id(firm)})).json()
    assert [r["amount"] for r in listed] == ["36.71"]
    # B-06: finance marks it paid back once, as the caller of the token, never a name in the body.
    operator = s.issuer.user_auth("olli.operator")
    url = f"/refunds/{listed[0]['refund_id']}/paid"
    paid_back = await s.invoicing.post(url, json={"note": "archive 123", "paid_by": "someone"}, auth=operator)
    again = await s.invoicing.post(url, json={"note": "again"}, auth=operator)
    viewer = await s.invoicing.post(url, json={}, auth=s.issuer.user_auth("ville.viewer"))
    assert paid_back.status_code == 200, paid_back.text
    assert (paid_back.json()["status"], paid_back.json()["paid_by"]) == ("paid_back", "olli.operator")
    assert paid_back.json()["paid_note"] == "archive 123"
    assert again.status_code == 409
    assert viewer.status_code == 403
    (after,) = (await s.invoicing.get("/refunds", params={"payer_id": business_id(firm)})).json()
    assert (after["status"], after["paid_by"], after["paid_note"]) == (
        "paid_back",
        "olli.operator",
        "archive 123",
    )


async def test_the_daily_trigger_runs_only_from_the_first_business_day(services: Services) -> None:
    s = services
    s.clock.set(at(dt.date(2026, 11, 2), 6))
    for day, status in (
        (dt.date(2026, 11, 1), "not_a_billing_day"),  # Sunday the 1st
        (dt.date(2027, 1, 1), "not_a_billing_day"),  # New Year's Day
        (dt.date(2027, 1, 2), "not_a_billing_day"),  # Saturday
    ):
        body = (await s.invoicing.post("/billing-runs/scheduled", json={"today": day.isoformat()})).json()
        assert (body["status"], body["today"]) == (status, day.isoformat())
    body = (await s.invoicing.post("/billing-runs/scheduled", json={"today": "2026-11-01"})).json()
    assert body["run_day"] == "2026-11-02"


async def test_operators_dry_run_credit_and_move_due_dates_over_http(services: Services) -> None:
    s = services
    tag = uuid.uuid4().hex[:6]
    env = f"env-ops-{tag}"
    company = 701
    s.clock.set(at(dt.date(2027, 3, 2), 8))
    created = await s.invoicing.post(
        "/contracts",
        json=signed(env, company, PackageCode.KEVYT)
        .model_copy(update={"production_date": dt.date(2027, 3, 1)})
        .model_dump(mode="json", exclude={"event_id", "occurred_at", "producer"}),
    )
    assert created.status_code == 201, created.text
    s.clock.set(at(dt.date(2027, 4, 1), 6))
    # A dry run of an open month: what would be billed, flagged, nothing written, no number taken.
    dry = (await s.invoicing.post("/billing-runs/dry-run", json={"run_date": "2027-04-01"})).json()
    assert (dry["billing_month"], dry["month_closed"]) == ("2027-03", False)
    (planned,) = [p for p in dry["payers"] if p["payer_id"] == business_id(company)]
    assert (planned["action"], planned["total_net"], planned["due_date"]) == ("issue", "39.00", "2027-04-11")
    assert (await s.invoicing.post("/billing-runs", json={"run_date": "2027-04-01"})).status_code == 409
    assert (await s.metering.post("/months/2027-03/close")).status_code == 200

    async def march() -> dict[str, Any] | None:
        await s.invoicing.post("/billing-runs", json={"run_date": "2027-04-01"})
        return await invoice_of(s, business_id(company), "2027-03")

    invoice = await wait_until(march, what="March billed")
    status = (await s.invoicing.get("/billing-runs/2027-03")).json()
    assert status["failures"] == []
    assert status["outcomes"]["issued"] >= 1

    # B-23: a move asked by a user without the right is refused with the reason, then one that may.
    # The operator is the token's subject (issue 12): a name in the body would be ignored.
    operator = s.issuer.user_auth("olli.operator")
    refused = await s.invoicing.post(
        f"/invoices/{invoice['invoice_id']}/due-date",
        json={
            "new_due_date": "2027-04-30",
            "reason": "asked for more time",
            "changed_by": "someone-else",
            "requested_by": {"person_name": "Kirsi Kirjanpitäjä", "role": "bookkeeper"},
        },
        auth=operator,
    )
    assert refused.status_code == 422
    assert refused.json()["rule"] == "B-25"
    moved = await s.invoicing.post(
        f"/invoices/{invoice['invoice_id']}/due-date",
        json={
            "new_due_date": "2027-04-30",
            "reason": "asked for more time",
            "requested_by": {"person_name": "Paula Pääkäyttäjä", "role": "main_user"},
        },
        auth=operator,
    )
    assert moved.json() == {"invoice_id": invoice["invoice_id"], "due_date": "2027-04-30"}
    audit = (await s.invoicing.get(f"/invoices/{invoice['invoice_id']}/due-date-changes")).json()
    assert [(a["outcome"], a["changed_by"], a["new_due_date"]) for a in audit] == [
        ("refused", "olli.operator", "2027-04-30"),
        ("accepted", "olli.operator", "2027-04-30"),
    ]

    # A credit note of the whole invoice, with a reason; retried with its key it is the same note.
    # Crediting is the billing operator's: a viewer's token is refused before anything happens.
    body = {"reason": "signed by mistake", "credited_by": "ops-2", "request_id": f"ticket-{tag}"}
    viewer = await s.invoicing.post(
        f"/invoices/{invoice['invoice_id']}/credit-notes", json=body, auth=s.issuer.user_auth("ville.viewer")
    )
    assert (viewer.status_code, viewer.headers["content-type"]) == (403, "application/problem+json")
    note = await s.invoicing.post(f"/invoices/{invoice['invoice_id']}/credit-notes", json=body, auth=operator)
    again = await s.invoicing.post(
        f"/invoices/{invoice['invoice_id']}/credit-notes", json=body, auth=operator
    )
    assert note.status_code == again.status_code == 201
    assert note.json()["credit_note_id"] == again.json()["credit_note_id"]
    assert (note.json()["total_gross"], note.json()["credited_invoice_number"]) == (
        "48.95",
        invoice["invoice_number"],
    )
    assert await credit_note_author(s, note.json()["credit_note_id"]) == "olli.operator"
    nothing_left = await s.invoicing.post(
        f"/invoices/{invoice['invoice_id']}/credit-notes", json={"reason": "again"}, auth=operator
    )
    assert (nothing_left.status_code, nothing_left.json()["detail"]) == (
        422,
        "nothing left to credit on this invoice",
    )
    after = (await s.invoicing.get(f"/invoices/{invoice['invoice_id']}")).json()
    assert (after["status"], after["open_amount"], after["due_date"]) == ("credited", "0.00", "2027-04-30")
    listed = (await s.invoicing.get("/credit-notes", params={"invoice_id": invoice["invoice_id"]})).json()
    assert [n["credit_note_number"] for n in listed] == [note.json()["credit_note_number"]]
    messages = await read_topic(
        s.kafka,
        "invoicing.credit-note-issued.v1",
        until=lambda found: any(m["credited_invoice_id"] == invoice["invoice_id"] for m in found),
    )
    assert len([m for m in messages if m["credited_invoice_id"] == invoice["invoice_id"]]) == 1


async def processed(s: Services, *event_ids: uuid.UUID) -> bool:
    """Whether invoicing's consumers applied (or ignored, committed) all these events."""
    engine = create_engine(s.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            done = t.runtime_tables.processed_events.c
            found = await session.scalar(select(func.count()).where(done.event_id.in_(list(event_ids))))
            return found == len(event_ids)
    finally:
        await engine.dispose()


async def test_i01_i03_delivery_and_payment_reports_out_of_order_each_keep_their_newest_state(
    services: Services,
) -> None:
    s = services
    tag = uuid.uuid4().hex[:6]
    env = f"env-reports-{tag}"
    company = 611
    s.clock.set(at(dt.date(2027, 5, 3), 8))
    await s.publisher.publish(
        signed(env, company, PackageCode.KEVYT).model_copy(update={"production_date": dt.date(2027, 5, 1)})
    )
    await wait_until(lambda: contract_exists(s, env), what="the May contract applied")
    s.clock.set(at(dt.date(2027, 6, 1), 6))
    assert (await s.metering.post("/months/2027-05/close")).status_code == 200

    async def may_invoice() -> dict[str, Any] | None:
        await s.invoicing.post("/billing-runs", json={"run_date": "2027-06-01"})
        return await invoice_of(s, business_id(company), "2027-05")

    invoice = await wait_until(may_invoice, what="May billed")
    invoice_id, gross = invoice["invoice_id"], invoice["total_gross"]
    first = at(dt.date(2027, 6, 1), 9)

    def meta() -> dict[str, Any]:
        return {"event_id": uuid.uuid4(), "occurred_at": first, "producer": "procountor-sync"}

    retrying = InvoiceDeliveryFailedV1(
        **meta(),
        invoice_id=invoice_id,
        reason="Procountor answered 503",
        retryable=True,
        failed_at=first,
    )
    sent = InvoiceDeliveredV1(
        **meta(),
        invoice_id=invoice_id,
        procountor_invoice_id=f"PC-{tag}",
        status=DeliveredStatus.SENT,
        delivered_at=first + dt.timedelta(minutes=1),
    )
    partly = InvoicePaymentStatusChangedV1(
        **meta(),
        invoice_id=invoice_id,
        procountor_invoice_id=f"PC-{tag}",
        status=ProcountorPaymentStatus.PARTLY_PAID,
        procountor_status="PARTLY_PAID",
        paid_amount=Decimal("10.00"),
        open_amount=Decimal(gross) - Decimal("10.00"),
        changed_at=first + dt.timedelta(days=3),
    )
    paid = InvoicePaymentStatusChangedV1(
        **meta(),
        invoice_id=invoice_id,
        procountor_invoice_id=f"PC-{tag}",
        status=ProcountorPaymentStatus.PAID,
        procountor_status="PAID",
        paid_amount=Decimal(gross),
        open_amount=Decimal("0.00"),
        changed_at=first + dt.timedelta(days=5),
    )

    # The newest report of each kind arrives first: the payment state before any delivery report.
    await s.publisher.publish(paid)
    await wait_until(lambda: processed(s, paid.event_id), what="the payment report applied")
    before_delivery = (await s.invoicing.get(f"/invoices/{invoice_id}")).json()
    await s.publisher.publish(sent)
    await wait_until(lambda: processed(s, sent.event_id), what="the delivery report applied")
    # Then the overtaken ones, on both topics: they change nothing.
    await s.publisher.publish(partly, retrying)
    await wait_until(lambda: processed(s, partly.event_id, retrying.event_id), what="the old reports read")
    view = (await s.invoicing.get(f"/invoices/{invoice_id}")).json()

    assert (before_delivery["payment_status"], before_delivery["delivery_status"]) == ("paid", None)
    assert (view["delivery_status"], view["delivery_error"]) == ("sent", None)
    assert dt.datetime.fromisoformat(view["delivery_status_at"]) == sent.delivered_at
    assert (view["payment_status"], view["procountor_paid_amount"], view["procountor_open_amount"]) == (
        "paid",
        gross,
        "0.00",
    )
    assert dt.datetime.fromisoformat(view["payment_status_at"]) == paid.changed_at
    assert view["procountor_invoice_id"] == f"PC-{tag}"
    # Procountor's payment state is its view; invoicing's own status follows the payments it got (B-06).
    assert view["status"] == "open"
