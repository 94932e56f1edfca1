"""Invoices out and money back, through Kafka, PostgreSQL and the emulator process (I-01…I-03, B-06, B-20…B-23)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billing_contracts.contracts import BillingChannel
from billing_contracts.invoicing import (
    CreditNoteIssuedV1,
    CreditNoteLine,
    InvoiceDueDateMovedV1,
    InvoiceIssuedV1,
    RefundRecordedV1,
    VatTotal,
)
from billing_contracts.procountor import (
    CustomerChangedInProcountorV1,
    InvoiceDeliveredV1,
    InvoicePaymentStatusChangedV1,
    InvoiceTotalsMismatchedV1,
    PaymentReceivedV1,
    ProductChangedInProcountorV1,
)
from billing_contracts.registry import topic_for
from billing_contracts.usage import HourEntryRecordedV1
from devstack.infra import KafkaTarget
from devstack.procountor import CLIENT_ID, CLIENT_SECRET
from devstack.testing import wait_until
from procountor_sync.repository import advisory_lock
from procountor_sync.service import SUPERSEDED

from ..builders import contract_changed
from .conftest import CREDENTIAL_KEY, WEBHOOK_SECRET, SyncStack, invoice

pytestmark = pytest.mark.integration


def in_procountor(stack: SyncStack, number: str) -> list[dict[str, Any]]:
    return [i for i in stack.emulator.inspect("GET", "/invoices") if i.get("originalInvoiceNumber") == number]


async def sent(stack: SyncStack, issued: InvoiceIssuedV1, *, within: float = 30) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = in_procountor(stack, issued.invoice_number)
        return found[0] if len(found) == 1 and found[0]["status"] == "SENT" else None

    return await wait_until(check, within=within, what=f"invoice {issued.invoice_number} SENT in Procountor")


async def delivery(stack: SyncStack, delivery_id: str, status: str, within: float = 30) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await stack.http.get(f"/deliveries/{delivery_id}")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["status"] == status else None

    return await wait_until(check, within=within, what=f"delivery {delivery_id} {status}")


async def published(
    stack: SyncStack, contract: type[Any], key: str, value: str, count: int = 1
) -> list[dict[str, Any]]:
    """The messages of a topic whose `key` field is `value`, once at least `count` are there."""

    async def found() -> list[dict[str, Any]] | None:
        matching = [m for m in await read_all(stack.kafka, topic_for(contract)) if m.get(key) == value]
        return matching if len(matching) >= count else None

    return await wait_until(found, within=30, interval=0.3, what=f"{count} {contract.__name__} for {value}")


async def read_all(kafka: KafkaTarget, topic: str) -> list[dict[str, Any]]:
    """Everything on a topic now: partitions assigned directly (no consumer group to join)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # the metadata, partitions included
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Until a fetch brings nothing: Tansu's end offsets cannot be trusted (docs/benchmarks.md).
        found: list[dict[str, Any]] = []
        while batch := await consumer.getmany(timeout_ms=300):
            for records in batch.values():
                found.extend(json.loads(r.value) for r in records)
        return found
    finally:
        await consumer.stop()


async def test_an_invoice_goes_out_with_its_customer_products_country_and_explained_lines(
    stack: SyncStack,
) -> None:
    issued = invoice(country="SE")
    await stack.publisher.publish(issued)

    procountor = await sent(stack, issued)
    partners = [p for p in stack.emulator.inspect("GET", "/businesspartners")
                if p["invoicingInfo"]["identifier"] == issued.payer_business_id]  # fmt: skip
    products = {p["code"]: p["id"] for p in stack.emulator.inspect("GET", "/products")}
    announced = await published(stack, InvoiceDeliveredV1, "invoice_id", issued.invoice_id)

    assert len(partners) == 1  # I-02: the customer was created once
    assert procountor["partnerId"] == partners[0]["id"]
    assert procountor["counterParty"]["counterPartyAddress"]["country"] == "SWEDEN"  # not always FINLAND
    assert [r["unit"] for r in procountor["invoiceRows"]] == ["MONTH", "PIECE"]  # Procountor's unit list
    assert [r["productId"] for r in procountor["invoiceRows"]] == [
        products["KEVYT-MONTHLY"],
        products["EXTRA-VOUCHER"],
    ]
    assert "lisätositteet" in procountor["invoiceRows"][1]["comment"]  # B-19 in brief on the row
    assert procountor["additionalInformation"].startswith(f"Laskun {issued.invoice_number} erittely")
    assert Decimal(str(procountor["invoiceSumInfo"][0]["invoiceSumTotal"])) == issued.total_gross
    assert announced[0]["status"] == "sent"
    assert "POST /api/invoices" in stack.emulator.inspect("GET", "/stats")["requestsByRoute"]


async def test_a_payment_webhook_delivered_twice_is_one_payment_and_forged_or_replayed_ones_are_refused(
    stack: SyncStack,
) -> None:
    issued = invoice()
    await stack.publisher.publish(issued)
    procountor = await sent(stack, issued)
    await delivery(stack, f"invoice:{issued.invoice_id}", "delivered")

    stack.emulator.inspect(
        "POST", f"/invoices/{procountor['id']}/payments", {"amount": str(issued.total_gross)}
    )
    payments = await published(stack, PaymentReceivedV1, "invoice_id", issued.invoice_id)
    stack.emulator.inspect("POST", "/webhooks/redeliver", {"index": -1})  # Procountor sends it again
    stack.emulator.inspect("POST", "/webhooks/redeliver", {"index": -2, "sameSignature": True})  # a replay
    body = b'{"eventType":"INVOICE_PAYMENT_CREATED","payload":{"invoiceId":1,"id":9,"amount":1}}'
    stamp = str(int(time.time()))
    forged = await stack.http.post(
        "/webhooks/procountor",
        content=body,
        headers={"X-Procountor-Timestamp": stamp, "X-Procountor-Signature": "sha256=" + "0" * 64},
    )
    stale_stamp = str(int(time.time()) - 3600)
    stale = await stack.http.post(
        "/webhooks/procountor",
        content=body,
        headers={
            "X-Procountor-Timestamp": stale_stamp,
            "X-Procountor-Signature": "sha256="
            + hmac.new(
                WEBHOOK_SECRET.encode(), stale_stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest(),
        },
    )
    statuses = await wait_until(_answered(stack, 3), what="three webhook pushes answered")
    status = await published(stack, InvoicePaymentStatusChangedV1, "invoice_id", issued.invoice_id)
    again = await published(stack, PaymentReceivedV1, "invoice_id", issued.invoice_id)

    assert len(payments) == len(again) == 1  # exactly once, by Procountor's payment id (I-03)
    assert Decimal(payments[0]["amount"]) == issued.total_gross
    assert payments[0]["payer_business_id"] == issued.payer_business_id
    assert statuses[-3:] == [200, 200, 409]  # first push, redelivery (same payment), replay refused
    assert forged.status_code == stale.status_code == 401
    assert status[-1]["status"] == "paid"
    assert Decimal(status[-1]["open_amount"]) == 0


def _answered(stack: SyncStack, count: int) -> Any:
    async def check() -> list[int] | None:
        deliveries = stack.emulator.inspect("GET", "/webhooks/deliveries")
        answered = [d["statuses"][0] for d in deliveries if d["statuses"]]
        return answered if len(answered) >= count and len(answered) == len(deliveries) else None

    return check


async def test_a_refund_is_noted_in_procountor_and_kept_on_no_list_of_ours(stack: SyncStack) -> None:
    """B-06: invoicing keeps the one refund list; procountor-sync notes each refund, once."""
    issued = invoice()
    await stack.publisher.publish(issued)
    procountor = await sent(stack, issued)
    stack.emulator.inspect(
        "POST", f"/invoices/{procountor['id']}/payments", {"amount": str(issued.total_gross + 20)}
    )
    payment = (await published(stack, PaymentReceivedV1, "invoice_id", issued.invoice_id))[0]
    # Invoicing allocates it and records the rest as a refund (B-06); here it is published as invoicing would.
    refund = RefundRecordedV1(
        event_id=uuid.uuid4(), occurred_at=dt.datetime.now(dt.UTC), producer="invoicing",
        refund_id=f"RF-{payment['procountor_payment_id']}", payer_id=issued.payer_id,
        payer_business_id=issued.payer_business_id, amount=Decimal("20.00"), payment_date=dt.date(2026, 11, 10),
        payment_event_id=uuid.UUID(payment["event_id"]), procountor_invoice_id=str(procountor["id"]),
        reason="overpayment: more than the payer's open invoices",
    )  # fmt: skip
    credit_refund = refund.model_copy(update={
        "event_id": uuid.uuid4(), "refund_id": f"RF-CN-{issued.invoice_number}", "amount": Decimal("7.50"),
        "credit_note_id": f"CN-{issued.invoice_number}", "reason": "credit note 1 on an invoice already paid",
    })  # fmt: skip
    await stack.publisher.publish(refund)
    await stack.publisher.publish(refund.model_copy(update={"event_id": uuid.uuid4()}))  # redelivered
    await stack.publisher.publish(credit_refund)

    noted = await delivery(stack, f"refund_note:{refund.refund_id}", "delivered")
    await delivery(stack, f"refund_note:{credit_refund.refund_id}", "delivered")
    notes = stack.emulator.api("GET", f"/invoices/{procountor['id']}")["notes"]
    no_list = await stack.http.get("/refunds")

    assert noted["kind"] == "refund_note"
    assert noted["procountor_invoice_id"] == str(procountor["id"])
    assert notes.count(f"[{refund.refund_id}] Liikasuoritus 20.00 €") == 1
    assert f"[{credit_refund.refund_id}] Hyvitys 7.50 €" in notes
    assert no_list.status_code == 404  # the refund list is invoicing's alone


async def test_a_credit_note_becomes_a_credit_invoice_settled_against_the_original(stack: SyncStack) -> None:
    issued = invoice()
    await stack.publisher.publish(issued)
    original = await sent(stack, issued)
    await delivery(stack, f"invoice:{issued.invoice_id}", "delivered")
    line = issued.lines[1]
    vat = (line.net * Decimal("0.255")).quantize(Decimal("0.01"))
    note = CreditNoteIssuedV1(
        event_id=uuid.uuid4(), occurred_at=dt.datetime.now(dt.UTC), producer="invoicing",
        credit_note_id=f"CN-{issued.invoice_number}", credit_note_number=str(int(issued.invoice_number) + 1),
        reference_number=issued.reference_number, credited_invoice_id=issued.invoice_id,
        credited_invoice_number=issued.invoice_number, payer_id=issued.payer_id,
        payer_business_id=issued.payer_business_id, payer_name=issued.payer_name, credit_date=dt.date(2026, 11, 5),
        reason="Väärä määrä", lines=[CreditNoteLine(
            line_no=1, credited_line_no=2, environment_id=line.environment_id, product_code=line.product_code,
            description=line.description, period_start=line.period_start, period_end=line.period_end,
            quantity=line.quantity, unit=line.unit, unit_price=line.unit_price, net=line.net, vat_rate=line.vat_rate)],
        vat_totals=[VatTotal(vat_rate=Decimal("25.5"), net=line.net, vat=vat)],
        total_net=line.net, total_vat=vat, total_gross=line.net + vat,
    )  # fmt: skip
    await stack.publisher.publish(note)

    await delivery(stack, f"credit_note:{note.credit_note_id}", "delivered")
    credit = in_procountor(stack, note.credit_note_number)[0]
    after = stack.emulator.api("GET", f"/invoices/{original['id']}")
    offsets = stack.emulator.api("GET", f"/invoices/{original['id']}/paymentevents")["results"]
    status = await published(stack, InvoicePaymentStatusChangedV1, "invoice_id", issued.invoice_id)

    assert credit["status"] == "PAID"  # settled in full against the original
    assert Decimal(str(credit["invoiceSumInfo"][0]["invoiceSumTotal"])) == -note.total_gross
    assert f"Hyvityslasku laskulle {issued.invoice_number}" in credit["additionalInformation"]
    assert [(e["type"], Decimal(str(e["amount"]))) for e in offsets] == [
        ("INVOICE_TO_INVOICE", note.total_gross)
    ]
    assert after["status"] == "PARTLY_PAID"
    assert Decimal(status[-1]["open_amount"]) == issued.total_gross - note.total_gross
    # An offset is not the payer's money: no PaymentReceivedV1 for it.
    payments = await read_all(stack.kafka, topic_for(PaymentReceivedV1))
    assert not [p for p in payments if p.get("invoice_id") == issued.invoice_id]


async def test_a_moved_due_date_reaches_the_invoice_in_procountor(stack: SyncStack) -> None:
    issued = invoice()
    await stack.publisher.publish(issued)
    procountor = await sent(stack, issued)
    moved = InvoiceDueDateMovedV1(
        event_id=uuid.uuid4(), occurred_at=dt.datetime.now(dt.UTC), producer="invoicing",
        invoice_id=issued.invoice_id, invoice_number=issued.invoice_number, old_due_date=issued.due_date,
        new_due_date=dt.date(2026, 11, 30), reason="Asiakas pyysi",
    )  # fmt: skip
    await stack.publisher.publish(moved)

    await delivery(stack, f"due_date:{issued.invoice_id}:{moved.event_id}", "delivered")
    after = stack.emulator.api("GET", f"/invoices/{procountor['id']}")
    overdue = (
        await stack.http.get("/overdue", params={"as_of": "2026-11-20", "payer": issued.payer_business_id})
    ).json()

    assert after["paymentInfo"]["newDueDate"] == "2026-11-30"  # B-23: reminders use the new date
    assert overdue == []  # not due before the 30th


async def test_customer_and_product_changes_in_procountor_come_back_once_and_ours_do_not_bounce(
    stack: SyncStack,
) -> None:
    issued = invoice()
    await stack.publisher.publish(issued)
    await sent(stack, issued)
    partner = next(p for p in stack.emulator.inspect("GET", "/businesspartners")
                   if p["invoicingInfo"]["identifier"] == issued.payer_business_id)  # fmt: skip
    stack.emulator.inspect(
        "PATCH", f"/businesspartners/{partner['id']}",
        {"billingAddress": {"street": "Uusikatu 5", "zip": "33100", "city": "Tampere"}},
    )  # fmt: skip
    product = next(p for p in stack.emulator.inspect("GET", "/products") if p["code"] == "EXTRA-VOUCHER")
    stack.emulator.inspect("PATCH", f"/products/{product['id']}", {"price": 1.99})

    changed = await published(stack, CustomerChangedInProcountorV1, "business_id", issued.payer_business_id)
    products = await published(stack, ProductChangedInProcountorV1, "product_code", "EXTRA-VOUCHER")
    # The next invoice carries the new address (invoicing applied it): no push, no bounce.
    later = invoice(business_id=issued.payer_business_id)
    later = later.model_copy(update={"billing_address": later.billing_address.model_copy(
        update={"street": "Uusikatu 5", "postal_code": "33100", "city": "Tampere"})})  # fmt: skip
    await stack.publisher.publish(later)
    await sent(stack, later)
    await stack.sync.poll_once()
    again = await published(stack, CustomerChangedInProcountorV1, "business_id", issued.payer_business_id)

    assert changed[0]["billing_address"] == {
        "street": "Uusikatu 5", "postal_code": "33100", "city": "Tampere", "country_code": "FI",
    }  # fmt: skip
    assert len(again) == 1  # published once; our own later write did not come back as a change
    assert products[0]["unit_price"] == "1.99"
    assert products[0]["changed_fields"] == ["unit_price"]


async def test_a_change_of_ours_reaches_the_procountor_customer_promptly_and_does_not_bounce(
    stack: SyncStack,
) -> None:
    """I-02: a name change notice (B-22) and a new billing contact (B-24) reach Procountor with no invoice."""
    issued = invoice()
    await stack.publisher.publish(issued)
    await sent(stack, issued)
    ours = contract_changed(issued, company_name="Uusi Nimi Oy", contact="Maija Meikäläinen")
    ours = ours.model_copy(update={"billing_address": issued.billing_address.model_copy(
        update={"street": "Hämeenkatu 9", "postal_code": "33100", "city": "Tampere"})})  # fmt: skip
    from_procountor = contract_changed(issued, change="billing_details_changed", company_name="Kaiku Oy")

    await stack.publisher.publish(ours)
    await stack.publisher.publish(from_procountor)
    done = await delivery(stack, f"customer:{issued.payer_business_id}:{ours.event_id}", "delivered")

    def partner() -> dict[str, Any]:
        return next(p for p in stack.emulator.inspect("GET", "/businesspartners")
                    if p["invoicingInfo"].get("identifier") == issued.payer_business_id)  # fmt: skip

    updated = partner()
    await stack.sync.poll_once()  # our own write is not a change made in Procountor
    echoed = [m for m in await read_all(stack.kafka, topic_for(CustomerChangedInProcountorV1))
              if m["business_id"] == issued.payer_business_id]  # fmt: skip
    bounced = await stack.http.get(
        f"/deliveries/customer:{issued.payer_business_id}:{from_procountor.event_id}"
    )

    assert updated["name"] == "Uusi Nimi Oy"
    assert updated["invoicingInfo"]["contactPerson"] == "Maija Meikäläinen"
    assert updated["billingAddress"]["street"] == "Hämeenkatu 9"  # where the invoices go (PUT, not PATCH)
    assert updated["invoicingInfo"]["einvoiceAddress"] == issued.einvoice_address.address  # the rest kept
    assert done["kind"] == "customer"
    assert echoed == []
    assert bounced.status_code == 404  # a change that came from Procountor is not pushed back
    assert partner()["name"] == "Uusi Nimi Oy"


async def test_an_older_change_of_ours_that_waited_for_the_customer_lock_never_overwrites_a_newer_one(
    stack: SyncStack,
) -> None:
    """I-02: two changes of one payer queued close together: whichever takes the customer's lock
    first, Procountor ends with the newer values (a rename, then a new billing contact). The older
    change asks whether it was superseded under the lock, not before it."""
    issued = invoice()
    await stack.publisher.publish(issued)
    await sent(stack, issued)
    now = dt.datetime.now(dt.UTC)
    older = contract_changed(issued, company_name="Ensin Uusi Oy", occurred_at=now - dt.timedelta(minutes=1))
    newer = contract_changed(issued, company_name="Ensin Uusi Oy", contact="Liisa Laskutus", occurred_at=now)
    engine = create_async_engine(stack.database_url)

    def waiting_for_a_lock(count: int) -> Any:
        async def check() -> bool:
            async with engine.connect() as connection:
                waiting = await connection.scalar(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))  # fmt: skip
            return int(waiting or 0) >= count

        return check

    try:
        async with advisory_lock(engine, f"procountor-sync:customer:{issued.payer_business_id}"):
            await stack.publisher.publish(older)
            await wait_until(waiting_for_a_lock(1), within=30, what="the older change waiting for the lock")
            await stack.publisher.publish(newer)
            await wait_until(waiting_for_a_lock(2), within=30, what="both changes waiting for the lock")
        done = [
            await delivery(stack, f"customer:{issued.payer_business_id}:{change.event_id}", "delivered")
            for change in (older, newer)
        ]
    finally:
        await engine.dispose()
    partner = next(p for p in stack.emulator.inspect("GET", "/businesspartners")
                   if p["invoicingInfo"].get("identifier") == issued.payer_business_id)  # fmt: skip

    assert partner["name"] == "Ensin Uusi Oy"
    assert partner["invoicingInfo"]["contactPerson"] == "Liisa Laskutus"
    assert (done[0]["last_error"], done[1]["last_error"]) == (SUPERSEDED, None)  # the older one gave way


async def test_an_inactive_customer_found_by_search_is_reactivated_not_duplicated(stack: SyncStack) -> None:
    """I-02: the search finds an inactive partner; it is reactivated (PUT) before it is invoiced."""
    issued = invoice()
    (seeded,) = stack.emulator.inspect("POST", "/businesspartners", [{
        "name": "Vanha Nimi Oy", "type": "CUSTOMER",
        "address": {"name": "Vanha Nimi Oy", "street": "Vanhatie 1", "zip": "00100", "city": "Helsinki"},
        "invoicingInfo": {"identifier": issued.payer_business_id, "identifierType": "BUSINESS_ID",
                          "invoiceChannel": "PAPER_INVOICE"},
        "paymentInfo": {"paymentMethod": "BANK_TRANSFER"},
        "registryInfo": {"active": False},
    }])  # fmt: skip
    await stack.publisher.publish(issued)

    procountor = await sent(stack, issued)
    partners = [p for p in stack.emulator.inspect("GET", "/businesspartners")
                if p["invoicingInfo"].get("identifier") == issued.payer_business_id]  # fmt: skip

    assert [p["id"] for p in partners] == [seeded["id"]]  # found, not duplicated
    assert partners[0]["registryInfo"]["active"] is True  # reactivated
    assert partners[0]["name"] == issued.payer_name  # and holds what invoicing holds
    assert partners[0]["billingAddress"]["street"] == issued.billing_address.street
    assert procountor["partnerId"] == seeded["id"]
    assert (
        "PUT /api/businesspartners/{partner_id}" in stack.emulator.inspect("GET", "/stats")["requestsByRoute"]
    )


async def test_totals_procountor_computes_otherwise_are_flagged_and_held_for_finance(
    stack: SyncStack,
) -> None:
    # B-18 rounds each line net (0.01 + 0.01); Procountor sums unrounded rows per rate (0.025 -> 0.03).
    cheap = [("EXTRA-PAYEE", Decimal(1), Decimal("0.0125")), ("EXTRA-PAYEE", Decimal(1), Decimal("0.0125"))]
    issued = invoice(prices=cheap)
    await stack.publisher.publish(issued)

    held = await delivery(stack, f"invoice:{issued.invoice_id}", "awaiting_approval")
    flagged = await published(stack, InvoiceTotalsMismatchedV1, "invoice_id", issued.invoice_id)
    listed = [m for m in (await stack.http.get("/mismatches")).json() if m["invoice_id"] == issued.invoice_id]
    stack.emulator.api("PUT", f"/invoices/{held['procountor_invoice_id']}/approve", {})  # finance approves
    await sent(stack, issued)
    metrics = (await stack.http.get("/metrics")).text

    assert held["hold_reason"].startswith("totals differ")
    assert flagged[0]["ours"]["gross"] != flagged[0]["procountor"]["gross"]
    assert listed[0]["procountor"]["net"] == "0.03"
    assert "procountor_totals_mismatches_total" in metrics


async def test_a_first_invoice_by_an_address_ordered_through_us_goes_by_e_invoice(stack: SyncStack) -> None:
    issued = invoice(channel=BillingChannel.EMAIL, operator="003723327487")
    await stack.publisher.publish(issued)

    procountor = await sent(stack, issued)

    assert procountor["invoiceChannel"] == "ELECTRONIC_INVOICE"  # B-20
    assert procountor["counterParty"]["einvoiceAddress"]["operator"] == "003723327487"


async def test_operators_list_cancel_and_requeue_deliveries(stack: SyncStack) -> None:
    refused = invoice(country="QQ")  # no such country in Procountor's list: refused, not retried
    await stack.publisher.publish(refused)

    row = await delivery(stack, f"invoice:{refused.invoice_id}", "refused")
    listed = (await stack.http.get("/deliveries", params={"status": "refused"})).json()
    operator = stack.issuer.user_auth("olli.operator")
    viewer = await stack.http.post(
        f"/deliveries/invoice:{refused.invoice_id}/requeue", auth=stack.issuer.user_auth("ville.viewer")
    )
    requeued = await stack.http.post(f"/deliveries/invoice:{refused.invoice_id}/requeue", auth=operator)
    cancelled = await stack.http.post(
        f"/deliveries/{refused.invoice_id}/cancel", json={"reason": "wrong country"}, auth=operator
    )
    summary = (await stack.http.get("/deliveries/summary")).json()

    assert "QQ" in row["last_error"]
    assert refused.invoice_id in {d["invoice_id"] for d in listed}
    assert viewer.status_code == 403  # requeues are the billing operator's
    assert requeued.status_code == 200
    assert requeued.json()["changed_by"] == "olli.operator"
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["changed_by"] == "olli.operator"  # the token's subject
    assert any(c["status"] == "cancelled" and c["count"] >= 1 for c in summary["counts"])


async def test_the_key_login_flow_stores_the_api_key_encrypted_and_never_shows_it(stack: SyncStack) -> None:
    # The operator starts it with her token; Procountor sends the browser back to the (public)
    # callback, which the state she was given ties to her.
    operator = stack.issuer.user_auth("olli.operator")
    async with httpx.AsyncClient(base_url=stack.url, follow_redirects=True, timeout=10) as browser:
        anonymous = await browser.get("/procountor/key-login")
        result = await browser.get("/procountor/key-login", auth=operator)
    replay = await stack.http.get("/procountor/key-login/callback", params={"code": "x", "state": "forged"})
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from procountor_sync.tables import credentials

    engine = create_async_engine(stack.database_url)
    async with engine.connect() as connection:
        stored = (await connection.execute(select(credentials.c.ciphertext))).scalar_one()
    await engine.dispose()
    api_key = Fernet(CREDENTIAL_KEY.encode()).decrypt(stored)
    token = await asyncio.to_thread(
        httpx.post,
        f"{stack.emulator.api_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "api_key": api_key.decode(),
        },
    )

    assert anonymous.status_code == 401
    assert result.status_code == 200, result.text
    assert (result.json()["stored"], result.json()["started_by"]) == (True, "olli.operator")
    assert api_key not in result.content  # never shown
    assert replay.status_code == 400  # an unknown state (CSRF) is refused
    assert api_key not in stored  # encrypted at rest
    assert token.status_code == 200  # the fetched key works at Procountor


async def test_hour_entries_from_kafka_come_out_as_the_payroll_file_by_the_cli(
    stack: SyncStack, tmp_path: Any
) -> None:
    employee = f"P-{uuid.uuid4().hex[:6]}"
    entries = [
        HourEntryRecordedV1(
            event_id=uuid.uuid4(),
            occurred_at=dt.datetime(2026, 9, day, 16, tzinfo=dt.UTC),
            producer="erp",
            environment_id="env-hours",
            entry_id=f"{employee}-{day}",
            employee_id=employee,
            service_product_code="CONSULTING",
            work_date=dt.date(2026, 9, day),
            hours=Decimal(hours),
            billable=True,
            recorded_at=dt.datetime(2026, 9, day, 16, tzinfo=dt.UTC),
        )
        for day, hours in ((7, "7.5"), (8, "2.25"))
    ]
    await stack.publisher.publish(*entries)
    out = tmp_path / "payroll.csv"

    async def exported() -> str | None:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "procountor-sync"),
            "export-payroll",
            "--url",
            stack.url,
            "--token",
            await stack.issuer.all_roles_auth().async_token(),
            "--period",
            "2026-09",
            "--out",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await process.wait() == 0
        text = out.read_bytes().decode("cp1252")
        return text if employee in text else None

    text = await wait_until(
        exported, within=30, interval=0.5, what="the employee's hours in the payroll file"
    )

    assert f"E;{employee};1004;;9,75;\r\n" in text  # I-04: one record, hours summed, decimal comma
