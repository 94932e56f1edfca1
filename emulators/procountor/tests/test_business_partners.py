"""Business partners: create, header search, pagination, optimistic locking."""

from __future__ import annotations

from typing import Any


async def test_creating_a_customer_answers_200_with_the_full_object(
    emulator: Any, make_customer: Any
) -> None:
    response = await emulator.call("POST", "/api/businesspartners", make_customer())

    assert response.status_code == 200
    partner = response.json()
    assert partner["id"] > 0
    assert partner["version"]
    assert partner["registryInfo"]["active"] is True
    assert partner["invoicingInfo"]["identifier"] == "1234567-1"
    fetched = await emulator.ok("GET", f"/api/businesspartners/{partner['id']}")
    assert fetched == partner


async def test_a_customer_without_name_payment_method_or_address_is_invalid(
    emulator: Any,
) -> None:
    response = await emulator.call(
        "POST", "/api/businesspartners", {"type": "CUSTOMER", "name": "x" * 81, "paymentInfo": {}}
    )

    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"name", "paymentInfo.paymentMethod", "address"}
    assert all(e["status"] == 400 for e in response.json()["errors"])


async def test_identifier_and_name_are_searched_by_http_header(emulator: Any, make_customer: Any) -> None:
    await emulator.ok("POST", "/api/businesspartners", make_customer())
    other = make_customer(name="Toinen Oy")
    other["invoicingInfo"] = {"identifier": "7654321-2", "customerNumber": "C-2"}
    await emulator.ok("POST", "/api/businesspartners", other)

    by_identifier = await emulator.ok("GET", "/api/businesspartners", headers={"identifier": "7654321-2"})
    by_name = await emulator.ok("GET", "/api/businesspartners", headers={"name": "asiakas"})
    by_query = await emulator.ok("GET", "/api/businesspartners", params={"identifier": "7654321-2"})

    assert [p["name"] for p in by_identifier["results"]] == ["Toinen Oy"]
    assert by_identifier["results"][0]["invoicingInfo"]["identifier"] == "7654321-2"
    assert [p["name"] for p in by_name["results"]] == ["Asiakas Oy"]
    # A query parameter is not a filter: the sensitive filters live in headers only.
    assert by_query["meta"]["totalCount"] == 2


async def test_customer_number_and_type_filter_the_list(emulator: Any, make_customer: Any) -> None:
    await emulator.ok("POST", "/api/businesspartners", make_customer())
    await emulator.ok(
        "POST",
        "/api/businesspartners",
        make_customer(type="SUPPLIER", invoicingInfo={"customerNumber": "S-1"}),
    )

    customers = await emulator.ok("GET", "/api/businesspartners", params={"type": "CUSTOMER"})
    by_number = await emulator.ok("GET", "/api/businesspartners", params={"customerNumber": "S-1"})

    assert [p["type"] for p in customers["results"]] == ["CUSTOMER"]
    assert [p["type"] for p in by_number["results"]] == ["SUPPLIER"]


async def test_lists_are_paged_with_size_and_zero_based_page(emulator: Any, make_customer: Any) -> None:
    for n in range(5):
        await emulator.ok("POST", "/api/businesspartners", make_customer(name=f"Asiakas {n}"))

    first = await emulator.ok("GET", "/api/businesspartners", params={"size": 2, "page": 0})
    last = await emulator.ok("GET", "/api/businesspartners", params={"size": 2, "page": 2})
    default = await emulator.ok("GET", "/api/businesspartners")
    too_big = await emulator.call("GET", "/api/businesspartners", params={"size": 201})

    assert [p["name"] for p in first["results"]] == ["Asiakas 0", "Asiakas 1"]
    assert first["meta"] == {"pageNumber": 0, "pageSize": 2, "resultCount": 2, "totalCount": 5}
    assert [p["name"] for p in last["results"]] == ["Asiakas 4"]
    assert default["meta"]["pageSize"] == 50
    assert too_big.status_code == 400
    assert too_big.json()["errors"][0]["field"] == "size"


async def test_patch_needs_the_current_version_and_refuses_a_stale_one(
    emulator: Any, make_customer: Any
) -> None:
    partner = await emulator.ok("POST", "/api/businesspartners", make_customer())
    path = f"/api/businesspartners/{partner['id']}"

    without = await emulator.call("PATCH", path, {"name": "Uusi Nimi Oy"})
    patched = await emulator.ok("PATCH", path, {"name": "Uusi Nimi Oy", "version": partner["version"]})
    stale = await emulator.call("PATCH", path, {"name": "Kolmas Oy", "version": partner["version"]})
    by_query = await emulator.call(
        "PATCH", path, {"name": "Kolmas Oy"}, params={"version": patched["version"]}
    )

    assert without.status_code == 400
    assert without.json()["errors"][0]["field"] == "version"
    assert patched["name"] == "Uusi Nimi Oy"
    assert patched["version"] > partner["version"]
    assert patched["invoicingInfo"] == partner["invoicingInfo"]
    assert stale.status_code == 400
    assert stale.json()["errors"][0]["field"] == "version"
    assert by_query.status_code == 200


async def test_put_replaces_the_partner_and_unknown_ids_are_404(emulator: Any, make_customer: Any) -> None:
    partner = await emulator.ok("POST", "/api/businesspartners", make_customer())

    replaced = await emulator.ok(
        "PUT",
        f"/api/businesspartners/{partner['id']}",
        make_customer(name="Korvattu Oy", version=partner["version"]),
    )
    missing = await emulator.call("GET", "/api/businesspartners/999999")

    assert replaced["name"] == "Korvattu Oy"
    assert replaced["id"] == partner["id"]
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["status"] == 404
