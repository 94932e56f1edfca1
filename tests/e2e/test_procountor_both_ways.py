"""Procountor both ways across all services: invoice out, money back, a credit note, an address changed there.

Usage → invoice → Procountor → payment back → invoice paid in invoicing (an overpayment: a refund
follows, B-06); a credit note → Procountor credit invoice settled against the original; a billing
address changed in Procountor → the next month's invoice carries it (I-01…I-03, B-22); a name
change notice and a new billing contact on our side → the Procountor customer at once, with no
invoice (I-02, B-22, B-24).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    EInvoiceAddress,
    PackageCode,
    PostalAddress,
)
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.testing import wait_until
from invoicing.calendar import HELSINKI

from ..conftest import Stack
from .test_billing_month import unique_business_id

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def contract(environment_id: str, business_id: str, name: str) -> ContractSignedV1:
    return ContractSignedV1(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 10, 20, 12, tzinfo=HELSINKI),
        producer="crm",
        environment_id=environment_id,
        business_id=business_id,
        company_name=name,
        package=PackageCode.KEVYT,
        production_date=date(2026, 11, 1),
        billing_address=PostalAddress(street="Aleksanterinkatu 15", postal_code="00100", city="Helsinki"),
        billing_channel=BillingChannel.EINVOICE,
        einvoice_address=EInvoiceAddress(
            address="0037" + business_id.replace("-", ""), operator="003721291126"
        ),
    )


async def billed(stack: Stack, run_date: date, month: str) -> None:
    assert (await stack.metering.post(f"/months/{month}/close")).status_code == 200

    async def run() -> dict[str, Any] | None:
        response = await stack.invoicing.post("/billing-runs", json={"run_date": run_date.isoformat()})
        return response.json() if response.status_code == 200 else None

    report = await wait_until(run, within=60, what=f"the {run_date} billing run")
    assert not report["failures"]


async def invoice_of(stack: Stack, business_id: str, period: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        invoices = (await stack.invoicing.get("/invoices", params={"period": period})).json()
        return next((i for i in invoices if i["payer_business_id"] == business_id), None)

    return await wait_until(find, what=f"{business_id}'s {period} invoice in invoicing")


async def sent(stack: Stack, number: str, within: float = 90) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = [i for i in (await stack.procountor.get("/_emulator/invoices")).json()
                 if i.get("originalInvoiceNumber") == number]  # fmt: skip
        return found[0] if len(found) == 1 and found[0]["status"] not in ("UNFINISHED", "NOT_SENT") else None

    return await wait_until(check, within=within, what=f"invoice {number} sent in Procountor")


async def in_invoicing(stack: Stack, invoice_id: str, **expected: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        view: dict[str, Any] = (await stack.invoicing.get(f"/invoices/{invoice_id}")).json()
        return view if all(view.get(k) == v for k, v in expected.items()) else None

    return await wait_until(check, within=60, what=f"invoice {invoice_id} {expected} in invoicing")


async def test_invoices_go_to_procountor_and_payments_credits_and_addresses_come_back(stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:6]
    a, b = unique_business_id(), unique_business_id()
    env_a, env_b = f"env-pa-{suffix}", f"env-pb-{suffix}"
    stack.set_clock(datetime(2026, 11, 2, 9, 0, tzinfo=HELSINKI))
    await stack.publisher.publish(contract(env_a, a, "Maksaja A Oy"), contract(env_b, b, "Hyvitettävä B Oy"))
    at = datetime(2026, 11, 2, 8, tzinfo=HELSINKI)
    await stack.publisher.publish(
        *(
            VoucherCreatedV1(
                event_id=uuid.uuid4(),
                occurred_at=at,
                producer="procountor",
                environment_id=env,
                voucher_id=f"V{n}",
                document_kind=DocumentKind.SALES_INVOICE,
                created_at=at,
            )
            for env in (env_a, env_b)
            for n in range(3)
        )
    )

    async def counted() -> bool:
        usage = [
            (await stack.metering.get(f"/environments/{e}/usage/2026-11")).json()["usage"]
            for e in (env_a, env_b)
        ]
        return all(u["vouchers"] == 3 for u in usage)

    await wait_until(counted, what="metering counted November")
    stack.set_clock(datetime(2026, 12, 1, 6, 0, tzinfo=HELSINKI))  # B-03: Tuesday 1 December
    await billed(stack, date(2026, 12, 1), "2026-11")
    invoice_a = await invoice_of(stack, a, "2026-11")
    invoice_b = await invoice_of(stack, b, "2026-11")
    sent_a = await sent(stack, invoice_a["invoice_number"])
    sent_b = await sent(stack, invoice_b["invoice_number"])

    # Payment back (I-03): A pays 5.00 € too much; invoicing marks the invoice paid and refunds the rest (B-06).
    gross_a = Decimal(invoice_a["total_gross"])
    paid = await stack.procountor.post(
        f"/_emulator/invoices/{sent_a['id']}/payments", json={"amount": str(gross_a + 5)}
    )
    assert paid.status_code == 200
    paid_a = await in_invoicing(stack, invoice_a["invoice_id"], status="paid", payment_status="paid")

    async def refund_noted() -> list[dict[str, Any]] | None:
        # B-06: one refund list (invoicing's); procountor-sync's delivery is the note in Procountor.
        listed = (await stack.invoicing.get("/refunds", params={"payer_id": a})).json()
        notes = [(await stack.sync.get(f"/deliveries/refund_note:{r['refund_id']}")).json() for r in listed]
        return listed if listed and all(n.get("status") == "delivered" for n in notes) else None

    refunds = await wait_until(
        refund_noted, within=60, what="the refund on invoicing's list, noted in Procountor"
    )
    notes = (await stack.procountor.get("/_emulator/invoices")).json()
    noted = next(i for i in notes if i["id"] == sent_a["id"])["notes"]
    marked = await stack.invoicing.post(
        f"/refunds/{refunds[0]['refund_id']}/paid", json={"note": "arkisto 42"}
    )
    marked_again = await stack.invoicing.post(f"/refunds/{refunds[0]['refund_id']}/paid", json={})
    no_second_list = await stack.sync.get("/refunds")

    # A credit note (invoicing) → a Procountor credit invoice, offset against B's invoice.
    credit = await stack.invoicing.post(
        f"/invoices/{invoice_b['invoice_id']}/credit-notes",
        json={"reason": "Väärin laskutettu", "credited_by": "support-7", "request_id": f"cn-{suffix}"},
    )
    assert credit.status_code == 201, credit.text
    note = credit.json()
    await sent(stack, note["credit_note_number"])
    after_b = await in_invoicing(stack, invoice_b["invoice_id"], status="credited", payment_status="paid")

    async def settled() -> dict[int, dict[str, Any]] | None:
        everything = {i["id"]: i for i in (await stack.procountor.get("/_emulator/invoices")).json()}
        credits = [
            i for i in everything.values() if i.get("originalInvoiceNumber") == note["credit_note_number"]
        ]
        return everything if [i["status"] for i in credits] == ["PAID"] else None

    everything = await wait_until(settled, within=30, what="the credit invoice settled against B's invoice")
    original_b = everything[sent_b["id"]]
    credit_invoice = next(
        i for i in everything.values() if i.get("originalInvoiceNumber") == note["credit_note_number"]
    )

    # A credit note on A's invoice, paid already: the credit is owed back — a refund recorded by
    # invoicing on the same list (B-06), which procountor-sync notes on A's Procountor invoice.
    credit_a = await stack.invoicing.post(
        f"/invoices/{invoice_a['invoice_id']}/credit-notes",
        json={"reason": "Hyvitetään kuukausi", "request_id": f"cn-a-{suffix}"},
    )
    assert credit_a.status_code == 201, credit_a.text
    note_a = credit_a.json()

    async def credit_refund_noted() -> dict[str, Any] | None:
        listed = (await stack.invoicing.get("/refunds", params={"payer_id": a})).json()
        found = next((r for r in listed if r["credit_note_id"] == note_a["credit_note_id"]), None)
        if found is None:
            return None
        delivery = (await stack.sync.get(f"/deliveries/refund_note:{found['refund_id']}")).json()
        return found if delivery.get("status") == "delivered" else None

    credit_refund = await wait_until(credit_refund_noted, within=60, what="A's credit refund, noted")
    notes_a = next(
        i for i in (await stack.procountor.get("/_emulator/invoices")).json() if i["id"] == sent_a["id"]
    )

    # A billing address changed in Procountor (B-22) → invoicing → the next invoice carries it.
    partner = next(
        p for p in (await stack.procountor.get("/_emulator/businesspartners")).json()
        if p["invoicingInfo"]["identifier"] == a
    )  # fmt: skip
    changed = await stack.procountor.patch(
        f"/_emulator/businesspartners/{partner['id']}",
        json={
            "billingAddress": {
                "name": "Maksaja A Oy",
                "street": "Hämeenkatu 3",
                "zip": "33100",
                "city": "Tampere",
            }
        },
    )
    assert changed.status_code == 200

    async def contract_moved() -> bool:
        contracts = (await stack.invoicing.get("/contracts", params={"environment_id": env_a})).json()
        return bool(contracts) and contracts[0]["billing_address"]["city"] == "Tampere"

    await wait_until(contract_moved, within=60, what="invoicing took the address from Procountor")
    stack.set_clock(datetime(2027, 1, 4, 6, 0, tzinfo=HELSINKI))  # B-03: Monday 4 January 2027
    try:
        await billed(stack, date(2027, 1, 4), "2026-12")
        next_a = await invoice_of(stack, a, "2026-12")
        next_sent = await sent(stack, next_a["invoice_number"])
    finally:
        stack.set_clock(datetime(2026, 11, 2, 6, 0, tzinfo=HELSINKI))

    # Our side changes B's name by a change notice (B-22) and its billing contact (B-24): the
    # Procountor customer follows at once, not with B's next invoice (I-02).
    main_user = {"person_name": "Maija Pääkäyttäjä", "role": "main_user"}
    renamed = await stack.invoicing.post(
        f"/contracts/C-{env_b}/company-name",
        json={
            "old_company_name": "Hyvitettävä B Oy",
            "new_company_name": "Uusi B Oy",
            "requested_by": main_user,
        },
    )
    contact = {"name": "Liisa Laskutus", "phone": "+358 40 123 4567", "email": "liisa@example.fi"}
    recontacted = await stack.invoicing.post(
        f"/contracts/C-{env_b}/billing-contact", json={"new_contact": contact, "requested_by": main_user}
    )
    assert (renamed.status_code, recontacted.status_code) == (200, 200), (renamed.text, recontacted.text)

    async def customer_b_followed() -> dict[str, Any] | None:
        partners = (await stack.procountor.get("/_emulator/businesspartners")).json()
        found = next(p for p in partners if p["invoicingInfo"]["identifier"] == b)
        followed = (
            found["name"] == "Uusi B Oy" and found["invoicingInfo"].get("contactPerson") == "Liisa Laskutus"
        )
        return found if followed else None

    customer_b = await wait_until(
        customer_b_followed, within=60, what="B's new name and contact in Procountor"
    )

    assert sent_a["invoiceChannel"] == "ELECTRONIC_INVOICE"
    assert Decimal(paid_a["paid_amount"]) == gross_a
    assert [Decimal(r["amount"]) for r in refunds] == [Decimal("5.00")]
    assert f"[{refunds[0]['refund_id']}] Liikasuoritus 5.00 €" in noted
    assert (marked.json()["status"], marked.json()["paid_by"]) == (
        "paid_back",
        "dev-all-roles",
    )  # the token's
    assert marked_again.status_code == 409  # paid back once
    assert no_second_list.status_code == 404
    assert Decimal(credit_refund["amount"]) == Decimal(note_a["total_gross"]) == gross_a  # all of it was paid
    assert credit_refund["status"] == "to_refund"
    assert f"[{credit_refund['refund_id']}] Hyvitys {note_a['total_gross']} €" in notes_a["notes"]
    assert Decimal(str(credit_invoice["invoiceSumInfo"][0]["invoiceSumTotal"])) == -Decimal(
        note["total_gross"]
    )
    assert credit_invoice["status"] == "PAID"
    assert original_b["status"] == "PAID"  # settled by the credit offset
    assert after_b["status"] == "credited"
    assert next_a["billing_address"]["city"] == "Tampere"
    assert next_sent["counterParty"]["counterPartyAddress"]["street"] == "Hämeenkatu 3"
    assert customer_b["registryInfo"]["active"] is True
    assert customer_b["billingAddress"]["street"] == "Aleksanterinkatu 15"  # what did not change stays
