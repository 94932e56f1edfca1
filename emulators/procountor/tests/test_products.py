"""Products: create, list across pages, replace, delete."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from procountor_emulator.wire import loads


def product(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "SALES",
        "name": "API-kutsu",
        "code": "API-CALL",
        "unit": "PIECE",
        "price": Decimal("0.0125"),
        "discount": Decimal(0),
        "active": True,
        "currency": "EUR",
        "vat": Decimal("25.5"),
    }
    body.update(overrides)
    return body


async def test_a_product_round_trips_with_exact_decimal_prices(emulator: Any) -> None:
    created = await emulator.ok("POST", "/api/products", product())
    raw = await emulator.call("GET", f"/api/products/{created['id']}")

    assert b'"price":0.0125' in raw.content
    assert loads(raw.content)["price"] == Decimal("0.0125")


async def test_a_product_without_required_fields_is_invalid(emulator: Any) -> None:
    response = await emulator.call("POST", "/api/products", {"type": "GIFT", "name": ""})

    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"type", "name", "discount", "price", "active", "currency"}


async def test_products_are_listed_page_by_page(emulator: Any) -> None:
    for n in range(3):
        await emulator.ok("POST", "/api/products", product(name=f"Tuote {n}", code=f"P{n}"))

    page = await emulator.ok("GET", "/api/products", params={"size": 2, "page": 1})
    by_code = await emulator.ok("GET", "/api/products", params={"code": "P2"})

    assert [p["name"] for p in page["results"]] == ["Tuote 2"]
    assert page["meta"]["totalCount"] == 3
    assert [p["code"] for p in by_code["results"]] == ["P2"]


async def test_a_product_is_replaced_and_deleted(emulator: Any) -> None:
    created = await emulator.ok("POST", "/api/products", product())
    path = f"/api/products/{created['id']}"

    replaced = await emulator.ok("PUT", path, product(name="Uusi nimi"))
    deleted = await emulator.call("DELETE", path)
    gone = await emulator.call("GET", path)

    assert replaced["name"] == "Uusi nimi"
    assert replaced["version"] > created["version"]
    assert deleted.status_code == 204
    assert gone.status_code == 404
