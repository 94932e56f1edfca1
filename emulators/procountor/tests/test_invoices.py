"""Sales invoices: validation, totals, the approve/send state machine, search, payments."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from procountor_emulator.rules import finnish_reference, is_valid_bank_reference


async def post(emulator: Any, body: dict[str, Any]) -> dict[str, Any]:
    invoice: dict[str, Any] = await emulator.ok("POST", "/api/invoices", body)
    return invoice


async def test_a_posted_invoice_is_unfinished_with_totals_and_a_generated_reference(
    emulator: Any, make_invoice: Any
) -> None:
    invoice = await post(emulator, make_invoice())

    assert invoice["status"] == "UNFINISHED"
    assert invoice["invoiceNumber"] == 1
    assert invoice["invoiceSumInfo"] == [
        {
            "currency": "EUR",
            "excludingVatTotal": Decimal("712.50"),
            "vatSumTotal": Decimal("181.69"),
            "invoiceSumTotal": Decimal("894.19"),
        }
    ]
    reference = invoice["paymentInfo"]["bankReferenceCode"]
    assert reference
    assert is_valid_bank_reference(reference)
    assert invoice["billingAddress"] == invoice["counterParty"]["counterPartyAddress"]


async def test_vat_is_computed_per_rate_on_the_sum_of_row_nets(emulator: Any, make_invoice: Any) -> None:
    row = {"product": "x", "unit": "PIECE", "discountPercent": 0, "quantity": 1}
    rows = [
        {**row, "unitPrice": Decimal("0.05"), "vatPercent": Decimal("25.5")},
        {**row, "unitPrice": Decimal("0.05"), "vatPercent": Decimal("25.5")},
        {**row, "unitPrice": Decimal("10.00"), "vatPercent": 14, "discountPercent": 10},
    ]
    invoice = await post(emulator, make_invoice(invoiceRows=rows, discountPercent=Decimal(50)))

    # 25.5 %: nets 0.025 + 0.025 = 0.05 -> VAT 0.01275 -> 0.01 (per row it would be 0.01 + 0.01).
    # 14 %: 10.00 * 0.9 * 0.5 = 4.50 -> VAT 0.63.
    assert invoice["invoiceSumInfo"][0]["excludingVatTotal"] == Decimal("4.55")
    assert invoice["invoiceSumInfo"][0]["vatSumTotal"] == Decimal("0.64")
    assert invoice["invoiceSumInfo"][0]["invoiceSumTotal"] == Decimal("5.19")


async def test_gross_unit_prices_have_their_vat_extracted(emulator: Any, make_invoice: Any) -> None:
    rows = [
        {
            "product": "x",
            "unit": "PIECE",
            "quantity": 2,
            "unitPrice": Decimal("12.55"),
            "discountPercent": 0,
            "vatPercent": Decimal("25.5"),
        }
    ]
    extra = {"accountingByRow": False, "unitPricesIncludeVat": True}
    invoice = await post(emulator, make_invoice(invoiceRows=rows, extraInfo=extra))

    assert invoice["invoiceSumInfo"][0]["invoiceSumTotal"] == Decimal("25.10")
    assert invoice["invoiceSumInfo"][0]["vatSumTotal"] == Decimal("5.10")
    assert invoice["invoiceSumInfo"][0]["excludingVatTotal"] == Decimal("20.00")


async def test_missing_required_fields_are_reported_field_by_field(emulator: Any) -> None:
    response = await emulator.call(
        "POST",
        "/api/invoices",
        {"type": "SALES_INVOICE", "counterParty": {"counterPartyAddress": {}}, "paymentInfo": {}},
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert all(e["status"] == 400 for e in errors)
    assert {e["field"] for e in errors} >= {
        "date",
        "invoiceChannel",
        "language",
        "vatStatus",
        "discountPercent",
        "counterParty.counterPartyAddress.name",
        "paymentInfo.paymentMethod",
        "paymentInfo.currency",
        "paymentInfo.dueDate",
        "paymentInfo.currencyRate",
        "extraInfo",
        "invoiceRows",
    }
    blank = next(e for e in errors if e["field"] == "paymentInfo.dueDate")
    assert blank["message"] == "Value of the 'paymentInfo.dueDate' cannot be blank."


async def test_row_fields_and_vat_rates_are_validated(emulator: Any, make_invoice: Any) -> None:
    rows = [{"product": "", "quantity": 1, "unitPrice": 1, "vatPercent": 24}]
    response = await emulator.call("POST", "/api/invoices", make_invoice(invoiceRows=rows))

    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {
        "invoiceRows[0].product",
        "invoiceRows[0].unit",
        "invoiceRows[0].discountPercent",
        "invoiceRows[0].vatPercent",
    }


async def test_an_e_invoice_needs_full_addresses_and_an_operator(emulator: Any, make_invoice: Any) -> None:
    body = make_invoice(billingAddress={"name": "Asiakas Oy"})
    del body["counterParty"]["einvoiceAddress"]["operator"]
    del body["counterParty"]["counterPartyAddress"]["zip"]

    response = await emulator.call("POST", "/api/invoices", body)

    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {
        "billingAddress.street",
        "billingAddress.zip",
        "billingAddress.city",
        "counterParty.counterPartyAddress.zip",
        "counterParty.einvoiceAddress.operator",
    }


async def test_a_due_date_before_the_invoice_date_is_a_class_level_error(
    emulator: Any, make_invoice: Any
) -> None:
    body = make_invoice()
    body["paymentInfo"]["dueDate"] = "2025-01-01"

    response = await emulator.call("POST", "/api/invoices", body)

    assert response.json()["errors"] == [
        {"status": 400, "field": "paymentInfo.dueDate", "message": "DUE_DATE_BEFORE_BILL_DATE"}
    ]


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        ("1232", True),
        ("1234561", True),
        ("1234560", False),
        ("RF18539007547034", True),
        ("RF18 5390 0754 7034", True),
        ("RF19539007547034", False),
        ("12", False),
    ],
)
async def test_a_given_bank_reference_must_carry_a_valid_check_digit(
    emulator: Any, make_invoice: Any, reference: str, valid: bool
) -> None:
    body = make_invoice()
    body["paymentInfo"]["bankReferenceCode"] = reference

    response = await emulator.call("POST", "/api/invoices", body)

    assert (response.status_code == 200) is valid
    if not valid:
        assert response.json()["errors"][0]["field"] == "paymentInfo.bankReferenceCode"


def test_finnish_references_use_the_7_3_1_weights() -> None:
    assert finnish_reference(123) == "1232"
    assert finnish_reference(123456) == "1234561"


async def test_approve_then_send_walks_unfinished_not_sent_sent(emulator: Any, make_invoice: Any) -> None:
    invoice = await post(emulator, make_invoice())
    path = f"/api/invoices/{invoice['id']}"

    approved = await emulator.ok("PUT", f"{path}/approve", {"comment": "ok"})
    after_approve = await emulator.ok("GET", path)
    sent = await emulator.ok("PUT", f"{path}/send")
    resent = await emulator.ok("PUT", f"{path}/send")
    after_send = await emulator.ok("GET", path)

    assert set(approved) == {"message"}
    assert after_approve["status"] == "NOT_SENT"
    assert set(sent) == {"message"}
    assert set(resent) == {"message"}
    assert after_send["status"] == "SENT"
    stats = (await emulator.http.get("/_emulator/stats")).json()
    assert [s["invoiceId"] for s in stats["sends"]] == [invoice["id"], invoice["id"]]


async def test_actions_in_the_wrong_state_are_forbidden(emulator: Any, make_invoice: Any) -> None:
    invoice = await post(emulator, make_invoice())
    path = f"/api/invoices/{invoice['id']}"

    send_unfinished = await emulator.call("PUT", f"{path}/send")
    await emulator.ok("PUT", f"{path}/approve")
    approve_twice = await emulator.call("PUT", f"{path}/approve")
    edit_approved = await emulator.call("PUT", path, {**make_invoice(), "version": invoice["version"]})
    await emulator.ok("PUT", f"{path}/invalidate")
    send_invalidated = await emulator.call("PUT", f"{path}/send")

    for response in (send_unfinished, approve_twice, edit_approved, send_invalidated):
        assert response.status_code == 403
        assert response.json()["errors"][0]["status"] == 403


async def test_an_unfinished_invoice_is_edited_only_with_its_current_version(
    emulator: Any, make_invoice: Any
) -> None:
    invoice = await post(emulator, make_invoice())
    path = f"/api/invoices/{invoice['id']}"

    without = await emulator.call("PUT", path, make_invoice(notes="x"))
    edited = await emulator.ok("PUT", path, make_invoice(notes="x", version=invoice["version"]))
    stale = await emulator.call("PUT", path, make_invoice(version=invoice["version"]))

    assert without.status_code == 400
    assert edited["notes"] == "x"
    assert edited["status"] == "UNFINISHED"
    assert edited["invoiceNumber"] == invoice["invoiceNumber"]
    assert stale.status_code == 400
    assert stale.json()["errors"][0]["field"] == "version"


async def test_invoices_are_found_by_original_number_status_and_partner(
    emulator: Any, make_invoice: Any, make_customer: Any
) -> None:
    partner = await emulator.ok("POST", "/api/businesspartners", make_customer())
    first = await post(emulator, make_invoice(originalInvoiceNumber="EXT-1"))
    second = await post(emulator, make_invoice(originalInvoiceNumber="EXT-2", partnerId=partner["id"]))
    await emulator.ok("PUT", f"/api/invoices/{second['id']}/approve")

    by_number = await emulator.ok("GET", "/api/invoices", params={"originalInvoiceNumber": "EXT-1"})
    by_status = await emulator.ok("GET", "/api/invoices", params={"status": "NOT_SENT"})
    by_partner = await emulator.ok("GET", "/api/invoices", params={"businessPartnerId": partner["id"]})
    none = await emulator.ok("GET", "/api/invoices", params={"originalInvoiceNumber": "EXT-9"})

    assert [i["id"] for i in by_number["results"]] == [first["id"]]
    assert by_number["results"][0]["status"] == "UNFINISHED"
    assert by_number["results"][0]["dueDate"] == "2025-02-14"
    assert [i["id"] for i in by_status["results"]] == [second["id"]]
    assert [i["id"] for i in by_partner["results"]] == [second["id"]]
    assert none == {
        "results": [],
        "meta": {"pageNumber": 0, "pageSize": 50, "resultCount": 0, "totalCount": 0},
    }


async def test_an_invoice_for_an_unknown_partner_is_invalid(emulator: Any, make_invoice: Any) -> None:
    response = await emulator.call("POST", "/api/invoices", make_invoice(partnerId=424242))

    assert response.json()["errors"][0]["field"] == "partnerId"


async def test_an_invoice_for_an_inactive_partner_is_refused_until_it_is_reactivated_by_put(
    emulator: Any, make_invoice: Any, make_customer: Any
) -> None:
    partner = await emulator.ok(
        "POST", "/api/businesspartners", {**make_customer(), "registryInfo": {"active": False}}
    )
    refused = await emulator.call("POST", "/api/invoices", make_invoice(partnerId=partner["id"]))
    reactivated = await emulator.ok(
        "PUT", f"/api/businesspartners/{partner['id']}", {**partner, "registryInfo": {"active": True}}
    )
    accepted = await emulator.call("POST", "/api/invoices", make_invoice(partnerId=partner["id"]))

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "partnerId"
    assert "inactive" in refused.json()["errors"][0]["message"]
    assert reactivated["registryInfo"]["active"] is True
    assert reactivated["version"] != partner["version"]
    assert accepted.status_code == 200


async def test_markpaid_records_events_and_moves_to_partly_paid_then_paid(
    emulator: Any, make_invoice: Any
) -> None:
    invoice = await post(emulator, make_invoice())
    path = f"/api/invoices/{invoice['id']}"
    payment = {
        "paymentDate": "2025-02-10",
        "amount": Decimal("400.00"),
        "currency": "EUR",
        "description": "Osasuoritus",
        "paymentMethodType": "BANK_STATEMENT",
    }

    too_early = await emulator.call("PUT", f"{path}/paymentevents/markpaid", payment)
    await emulator.ok("PUT", f"{path}/approve")
    await emulator.ok("PUT", f"{path}/send")
    await emulator.ok("PUT", f"{path}/paymentevents/markpaid", payment)
    partly = await emulator.ok("GET", path)
    await emulator.ok("PUT", f"{path}/paymentevents/markpaid", {**payment, "amount": Decimal("494.19")})
    paid = await emulator.ok("GET", path)
    events = await emulator.ok("GET", f"{path}/paymentevents")

    assert too_early.status_code == 403
    assert partly["status"] == "PARTLY_PAID"
    assert paid["status"] == "PAID"
    assert [e["amount"] for e in events["results"]] == [Decimal("400.00"), Decimal("494.19")]
    assert {e["type"] for e in events["results"]} == {"JOURNAL_TO_INVOICE"}


async def test_a_simulated_customer_payment_pays_the_invoice(emulator: Any, make_invoice: Any) -> None:
    invoice = await post(emulator, make_invoice())
    await emulator.ok("PUT", f"/api/invoices/{invoice['id']}/approve")
    await emulator.ok("PUT", f"/api/invoices/{invoice['id']}/send")

    response = await emulator.http.post(
        f"/_emulator/invoices/{invoice['id']}/payments", json={"amount": 894.19}
    )
    events = await emulator.ok("GET", f"/api/invoices/{invoice['id']}/paymentevents")
    everything = (await emulator.http.get("/_emulator/invoices")).json()

    assert response.status_code == 200
    assert response.json()["status"] == "PAID"
    assert events["results"][0]["type"] == "REFERENCEPAYMENT_TO_INVOICE"
    assert [i["status"] for i in everything] == ["PAID"]


async def test_reset_forgets_everything(emulator: Any, make_invoice: Any) -> None:
    await post(emulator, make_invoice())

    await emulator.http.post("/_emulator/reset")

    assert (await emulator.http.get("/_emulator/invoices")).json() == []
    assert (await emulator.call("GET", "/api/invoices")).status_code == 401


async def test_injected_faults_answer_the_given_status_then_stop(emulator: Any) -> None:
    await emulator.http.post(
        "/_emulator/faults", json={"status": 503, "times": 2, "pathPrefix": "/api/products"}
    )

    statuses = [(await emulator.call("GET", "/api/products")).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


async def test_a_non_numeric_id_is_answered_with_a_procountor_error_body(emulator: Any) -> None:
    response = await emulator.call("GET", "/api/invoices/abc")

    assert response.status_code == 400
    assert response.json()["errors"][0]["status"] == 400
