"""Fixtures: an emulator app on an in-process ASGI transport, a fake clock, sample bodies."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest

from procountor_emulator import ApiClientRegistration, EmulatorConfig, create_app
from procountor_emulator.wire import dumps, loads

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret-value"
API_KEY = "test-api-key-value"


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Emulator:
    """An httpx client bound to one emulator app, with Procountor's conventions as helpers."""

    def __init__(self, http: httpx.AsyncClient, clock: FakeClock) -> None:
        self.http = http
        self.clock = clock
        self.token: str | None = None

    async def login(self) -> str:
        response = await self.http.post(
            "/api/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "api_key": API_KEY,
            },
        )
        assert response.status_code == 200, response.text
        self.token = str(response.json()["access_token"])
        return self.token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if self.token is None:
            await self.login()
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        content = None
        if body is not None:
            content = dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        return await self.http.request(method, path, content=content, params=params, headers=all_headers)

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = await self.call(method, path, body, **kwargs)
        assert response.status_code == 200, response.text
        return loads(response.content)


EmulatorFactory = Callable[..., AbstractAsyncContextManager[Emulator]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_emulator(clock: FakeClock) -> EmulatorFactory:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Emulator]:
        config = EmulatorConfig(
            clients=(ApiClientRegistration(CLIENT_ID, CLIENT_SECRET, API_KEY),),
            monotonic=clock,
            **overrides,
        )
        transport = httpx.ASGITransport(app=create_app(config))
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
            yield Emulator(http, clock)

    return factory


@pytest.fixture
async def emulator(open_emulator: EmulatorFactory) -> AsyncIterator[Emulator]:
    # A generous limit: these tests are about behaviour, not the rate limit.
    async with open_emulator(rate_limit_requests=10_000) as emulator:
        yield emulator


def customer(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Asiakas Oy",
        "type": "CUSTOMER",
        "address": {"name": "Asiakas Oy", "street": "Katu 1", "zip": "00100", "city": "Helsinki"},
        "paymentInfo": {"paymentMethod": "BANK_TRANSFER", "paymentTermDays": "14"},
        "invoicingInfo": {
            "identifier": "1234567-1",
            "identifierType": "BUSINESS_ID",
            "customerNumber": "C-1",
            "invoiceChannel": "ELECTRONIC_INVOICE",
            "einvoiceAddress": "003712345671",
            "einvoiceOperator": "003721291126",
        },
    }
    body.update(overrides)
    return body


SALES_INVOICE: dict[str, Any] = {
    "type": "SALES_INVOICE",
    "date": "2025-01-31",
    "counterParty": {
        "identifier": "1234567-1",
        "counterPartyAddress": {
            "name": "Asiakas Oy",
            "street": "Katu 1",
            "zip": "00100",
            "city": "Helsinki",
            "country": "FINLAND",
        },
        "einvoiceAddress": {"operator": "003721291126", "address": "003712345678"},
    },
    "paymentInfo": {
        "paymentMethod": "BANK_TRANSFER",
        "currency": "EUR",
        "bankAccount": {"accountNumber": "FI2112345600000785"},
        "dueDate": "2025-02-14",
        "currencyRate": Decimal(1),
        "bankReferenceCode": "",
    },
    "extraInfo": {"accountingByRow": False, "unitPricesIncludeVat": False},
    "discountPercent": Decimal(0),
    "vatStatus": 1,
    "invoiceChannel": "ELECTRONIC_INVOICE",
    "language": "FINNISH",
    "originalInvoiceNumber": "EXT-1001",
    "invoiceRows": [
        {
            "product": "Konsultointi",
            "quantity": Decimal("7.5"),
            "unit": "HOUR",
            "unitPrice": Decimal("95.0"),
            "discountPercent": Decimal(0),
            "vatPercent": Decimal("25.5"),
            "comment": "Tammikuu",
        }
    ],
}


def sales_invoice(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(SALES_INVOICE)
    body.update(overrides)
    return body


@pytest.fixture
def make_customer() -> Callable[..., dict[str, Any]]:
    return customer


@pytest.fixture
def make_invoice() -> Callable[..., dict[str, Any]]:
    return sales_invoice
