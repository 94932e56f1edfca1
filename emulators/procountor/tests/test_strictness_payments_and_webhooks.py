"""Strict validation, credit invoices, due-date moves, version search, key login and signed webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI, Request

from devstack.testing import serve_http
from procountor_emulator.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER


async def sent_invoice(emulator: Any, body: dict[str, Any]) -> dict[str, Any]:
    invoice: dict[str, Any] = await emulator.ok("POST", "/api/invoices", body)
    await emulator.ok("PUT", f"/api/invoices/{invoice['id']}/approve")
    await emulator.ok("PUT", f"/api/invoices/{invoice['id']}/send")
    return invoice


def fields(response: Any) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surprise": 1}, "surprise"),
        (
            {
                "invoiceRows": [
                    {
                        "product": "x",
                        "quantity": 1,
                        "unit": "PCS",
                        "unitPrice": 1,
                        "discountPercent": 0,
                        "vatPercent": Decimal("25.5"),
                    }
                ]
            },
            "invoiceRows[0].unit",
        ),
        (
            {
                "counterParty": {
                    "identifier": "1234567-8",
                    "counterPartyAddress": {"name": "A", "country": "FINLAND"},
                }
            },
            "counterParty.identifier",
        ),
        (
            {"counterParty": {"counterPartyAddress": {"name": "A", "country": "SUOMI"}}},
            "counterParty.counterPartyAddress.country",
        ),
        (
            {
                "paymentInfo": {
                    "paymentMethod": "BANK_TRANSFER",
                    "currency": "EUR",
                    "dueDate": "2025-02-14",
                    "currencyRate": 1,
                    "bankAccount": {"accountNumber": "FI2112345600000786"},
                }
            },
            "paymentInfo.bankAccount.accountNumber",
        ),
        ({"invoiceChannel": "EMAIL"}, "counterParty.email"),
    ],
)
async def test_procountor_refuses_what_the_real_api_refuses(
    emulator: Any, make_invoice: Any, change: dict[str, Any], field: str
) -> None:
    response = await emulator.call("POST", "/api/invoices", make_invoice(**change))

    assert response.status_code == 400
    assert field in fields(response)


async def test_an_unknown_einvoice_operator_is_refused_for_invoices_and_customers(
    emulator: Any, make_invoice: Any, make_customer: Any
) -> None:
    invoice = make_invoice()
    invoice["counterParty"]["einvoiceAddress"]["operator"] = "NOTANOPERATOR"
    customer = make_customer()
    customer["invoicingInfo"]["einvoiceOperator"] = "NOTANOPERATOR"

    refused_invoice = await emulator.call("POST", "/api/invoices", invoice)
    refused_customer = await emulator.call("POST", "/api/businesspartners", customer)

    assert "counterParty.einvoiceAddress.operator" in fields(refused_invoice)
    assert "invoicingInfo.einvoiceOperator" in fields(refused_customer)


async def test_a_credit_invoice_and_its_original_are_settled_against_each_other(
    emulator: Any, make_invoice: Any
) -> None:
    original = await sent_invoice(emulator, make_invoice())
    credit_rows = [{**original["invoiceRows"][0], "quantity": Decimal("-2")}]
    del credit_rows[0]["id"]
    credit = await sent_invoice(emulator, make_invoice(invoiceRows=credit_rows, originalInvoiceNumber="CN-1"))
    offset = {"paymentDate": "2025-02-01", "currency": "EUR", "paymentMethodType": "CREDIT_NOTE"}
    credited = credit["invoiceSumInfo"][0]["invoiceSumTotal"]

    too_much = await emulator.call(
        "PUT", f"/api/invoices/{original['id']}/paymentevents/markpaid", {**offset, "amount": Decimal("5000")}
    )
    positive_on_credit = await emulator.call(
        "PUT", f"/api/invoices/{credit['id']}/paymentevents/markpaid", {**offset, "amount": -credited}
    )
    await emulator.ok(
        "PUT", f"/api/invoices/{original['id']}/paymentevents/markpaid", {**offset, "amount": -credited}
    )
    await emulator.ok(
        "PUT", f"/api/invoices/{credit['id']}/paymentevents/markpaid", {**offset, "amount": credited}
    )
    after = await emulator.ok("GET", f"/api/invoices/{original['id']}")
    events = await emulator.ok("GET", f"/api/invoices/{original['id']}/paymentevents")

    assert credited == Decimal("-238.45")  # 2 × 95.00 = 190.00 net + 48.45 VAT, negative
    assert too_much.status_code == positive_on_credit.status_code == 400
    assert after["status"] == "PARTLY_PAID"
    assert [(e["type"], e["amount"]) for e in events["results"]] == [
        ("INVOICE_TO_INVOICE", Decimal("238.45"))
    ]
    assert (await emulator.ok("GET", f"/api/invoices/{credit['id']}"))["status"] == "PAID"


async def test_a_sent_invoices_due_date_moves_by_new_due_date_and_nothing_else(
    emulator: Any, make_invoice: Any
) -> None:
    invoice = await sent_invoice(emulator, make_invoice())
    current = await emulator.ok("GET", f"/api/invoices/{invoice['id']}")
    moved = {**current, "paymentInfo": {**current["paymentInfo"], "newDueDate": "2025-03-01"}}

    other_edit = await emulator.call("PUT", f"/api/invoices/{invoice['id']}", {**moved, "notes": "x"})
    accepted = await emulator.ok("PUT", f"/api/invoices/{invoice['id']}", moved)
    stale = await emulator.call("PUT", f"/api/invoices/{invoice['id']}", moved)

    assert other_edit.status_code == 403
    assert accepted["paymentInfo"]["newDueDate"] == "2025-03-01"
    assert accepted["paymentInfo"]["dueDate"] == "2025-02-14"
    assert stale.status_code == 400


async def test_partners_changed_since_a_version_are_found_by_version_date(
    emulator: Any, make_customer: Any
) -> None:
    first = await emulator.ok("POST", "/api/businesspartners", make_customer())
    second = await emulator.ok("POST", "/api/businesspartners", make_customer(name="Toinen Oy"))
    edited = (
        await emulator.http.patch(
            f"/_emulator/businesspartners/{first['id']}",
            json={"billingAddress": {"name": "A", "street": "Uusi 2"}},
        )
    ).json()

    changed = await emulator.ok(
        "GET", "/api/businesspartners", params={"versionStartDate": edited["version"]}
    )

    assert edited["version"] > second["version"]
    assert [p["id"] for p in changed["results"]] == [first["id"]]


async def test_a_payment_is_pushed_to_the_webhook_signed_with_its_secret(
    emulator: Any, make_invoice: Any
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> dict[str, str]:
        received.append((dict(request.headers), await request.body()))
        return {"status": "ok"}

    secret = "a-webhook-secret-of-ours"
    async with serve_http(receiver) as url:
        await emulator.ok(
            "POST",
            "/api/webhooks",
            {
                "url": f"{url}/hook",
                "authenticationType": "HMAC",
                "authenticationMeta": {"secret": secret},
                "subscriptions": ["INVOICE_PAYMENT_CREATED"],
            },
        )
        invoice = await sent_invoice(emulator, make_invoice())
        await emulator.http.post(f"/_emulator/invoices/{invoice['id']}/payments", json={"amount": "900.00"})
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.02)
        deliveries = (await emulator.http.get("/_emulator/webhooks/deliveries")).json()
    assert received, deliveries

    headers, body = received[0]
    timestamp = headers[TIMESTAMP_HEADER.lower()]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == f"sha256={expected}"
    assert b'"eventType":"INVOICE_PAYMENT_CREATED"' in body
    assert b'"amount":900.00' in body  # an overpayment of 894.19 is recorded as paid
