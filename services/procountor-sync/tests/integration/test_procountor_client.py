"""ProcountorClient against the Procountor emulator served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from pydantic import SecretStr

from procountor_emulator import ApiClientRegistration, EmulatorConfig, create_app
from procountor_sync.procountor_client import (
    ProcountorClient,
    ProcountorClientConfig,
    ProcountorError,
    ProcountorUnavailableError,
)

pytestmark = pytest.mark.integration

CLIENT_ID = "sync-integration"
CLIENT_SECRET = "s3cret-client-value-4711"
API_KEY = "api-key-value-0815-do-not-log"
SECRETS = (CLIENT_SECRET, API_KEY)


class OffsetClock:
    """The real monotonic clock, which a test can push forward to skip waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class RunningEmulator:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.api_url = f"{base_url}/api"

    def inspect(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}/_emulator{path}", json=body)
        response.raise_for_status()
        return response.json()


def serve(config: EmulatorConfig) -> tuple[RunningEmulator, Callable[[], None]]:
    """Start uvicorn on a free port in a daemon thread; return it and a stopper."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the emulator did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return RunningEmulator(f"http://127.0.0.1:{port}"), stop


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    stoppers: list[Callable[[], None]] = []

    def start(**overrides: Any) -> RunningEmulator:
        config = EmulatorConfig(
            clients=(ApiClientRegistration(CLIENT_ID, CLIENT_SECRET, API_KEY),), **overrides
        )
        emulator, stop = serve(config)
        stoppers.append(stop)
        return emulator

    yield start
    for stop in stoppers:
        stop()


@pytest.fixture
def emulator(start_emulator: Callable[..., RunningEmulator]) -> RunningEmulator:
    return start_emulator()


@asynccontextmanager
async def procountor(
    emulator: RunningEmulator, *, clock: Callable[[], float] = time.monotonic, **overrides: Any
) -> AsyncIterator[ProcountorClient]:
    settings: dict[str, Any] = {
        "base_url": emulator.api_url,
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
        "api_key": SecretStr(API_KEY),
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 1.0,
        **overrides,
    }
    async with ProcountorClient(ProcountorClientConfig(**settings), clock=clock) as client:
        yield client


INVOICE: dict[str, Any] = {
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
    "originalInvoiceNumber": "INV-2025-0001",
    "invoiceRows": [
        {
            "product": "Konsultointi",
            "quantity": Decimal("7.5"),
            "unit": "HOUR",
            "unitPrice": Decimal("95.00"),
            "discountPercent": Decimal(0),
            "vatPercent": Decimal("25.5"),
        }
    ],
}


def invoice_body(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(INVOICE)
    body.update(overrides)
    return body


def product_body(name: str) -> dict[str, Any]:
    return {
        "type": "SALES",
        "name": name,
        "unit": "PIECE",
        "price": Decimal("0.0125"),
        "discount": 0,
        "active": True,
        "currency": "EUR",
    }


async def test_the_token_is_fetched_once_and_reused(emulator: RunningEmulator) -> None:
    async with procountor(emulator) as client:
        for n in range(3):
            await client.create_product(product_body(f"Tuote {n}"))

        assert len(await client.list_products()) == 3

    assert emulator.inspect("GET", "/stats")["tokensIssued"] == 1


async def test_the_token_is_renewed_five_minutes_before_it_expires(
    start_emulator: Callable[..., RunningEmulator],
) -> None:
    emulator = start_emulator(token_lifetime_seconds=360)
    clock = OffsetClock()
    async with procountor(emulator, clock=clock) as client:
        await client.list_products()
        clock.offset = 59
        await client.list_products()
        assert emulator.inspect("GET", "/stats")["tokensIssued"] == 1

        clock.offset = 61  # 360 s lifetime less the 300 s margin has passed
        await client.list_products()

    assert emulator.inspect("GET", "/stats")["tokensIssued"] == 2


async def test_a_token_past_its_lifetime_is_replaced_before_procountor_refuses_it(
    start_emulator: Callable[..., RunningEmulator],
) -> None:
    emulator = start_emulator(token_lifetime_seconds=1)
    async with procountor(emulator, token_renewal_margin_seconds=0) as client:
        await client.list_products()
        await asyncio.sleep(1.1)

        await client.list_products()

    stats = emulator.inspect("GET", "/stats")
    assert stats["tokensIssued"] == 2
    assert stats["unauthorized"] == 0


async def test_an_expired_token_is_renewed_when_procountor_answers_401(
    start_emulator: Callable[..., RunningEmulator],
) -> None:
    emulator = start_emulator()
    async with procountor(emulator) as client:
        await client.list_products()
        emulator.inspect("POST", "/tokens/expire")  # the client still trusts its token

        assert await client.list_products() == []

    stats = emulator.inspect("GET", "/stats")
    assert stats["tokensIssued"] == 2
    assert stats["unauthorized"] == 1


async def test_a_second_401_in_a_row_is_not_retried_again(emulator: RunningEmulator) -> None:
    emulator.inspect("POST", "/faults", {"status": 401, "times": 5, "pathPrefix": "/api/products"})
    async with procountor(emulator) as client:
        with pytest.raises(ProcountorError) as raised:
            await client.list_products()

    assert raised.value.status == 401
    assert emulator.inspect("GET", "/stats")["tokensIssued"] == 2


async def test_requests_refused_with_429_are_retried_after_backing_off(
    start_emulator: Callable[..., RunningEmulator],
) -> None:
    emulator = start_emulator(rate_limit_requests=4)
    # The client is allowed to overrun the emulator's lower limit, so Procountor answers 429.
    async with procountor(emulator, max_requests_per_second=50, max_attempts=10) as client:
        created = await asyncio.gather(
            *(client.create_product(product_body(f"Tuote {n}")) for n in range(10))
        )

    assert len({p["id"] for p in created}) == 10
    assert emulator.inspect("GET", "/stats")["rateLimited"] > 0
    assert len(emulator.inspect("GET", "/products")) == 10


async def test_the_client_throttles_itself_to_the_documented_limit(
    emulator: RunningEmulator,
) -> None:
    async with procountor(emulator) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.list_products() for _ in range(30)))
        elapsed = time.monotonic() - started

    assert emulator.inspect("GET", "/stats")["rateLimited"] == 0
    assert elapsed >= 1.0  # 31 requests (with the token) cannot fit in one second at 20/s


async def test_server_errors_on_reads_and_on_the_token_request_are_retried(
    emulator: RunningEmulator,
) -> None:
    emulator.inspect("POST", "/faults", {"status": 502, "times": 1, "pathPrefix": "/api/oauth"})
    emulator.inspect(
        "POST", "/faults", {"status": 503, "times": 2, "method": "GET", "pathPrefix": "/api/products"}
    )
    async with procountor(emulator) as client:
        assert await client.list_products() == []


async def test_a_post_is_not_repeated_after_a_server_error(emulator: RunningEmulator) -> None:
    async with procountor(emulator) as client:
        await client.list_products()  # fetch the token before the fault is armed
        emulator.inspect("POST", "/faults", {"status": 500, "times": 1, "method": "POST"})

        with pytest.raises(ProcountorError) as raised:
            await client.create_invoice(invoice_body())

    assert raised.value.status == 500
    assert emulator.inspect("GET", "/invoices") == []


async def test_validation_errors_surface_with_procountors_error_body(
    emulator: RunningEmulator,
) -> None:
    body = invoice_body()
    body["paymentInfo"]["dueDate"] = "2025-01-01"
    del body["invoiceRows"][0]["unit"]

    async with procountor(emulator) as client:
        with pytest.raises(ProcountorError) as raised:
            await client.create_invoice(body)

    error = raised.value
    assert error.status == 400
    assert error.has_field("paymentInfo.dueDate")
    assert error.has_field("invoiceRows[0].unit")
    assert "DUE_DATE_BEFORE_BILL_DATE" in str(error)
    assert "POST /invoices" in str(error)


async def test_wrong_state_is_a_403_procountor_error(emulator: RunningEmulator) -> None:
    async with procountor(emulator) as client:
        invoice = await client.create_invoice(invoice_body())
        with pytest.raises(ProcountorError) as raised:
            await client.send_invoice(invoice["id"])

    assert raised.value.status == 403


async def test_partners_are_found_by_business_id_and_patched_with_their_version(
    emulator: RunningEmulator,
) -> None:
    partner = {
        "name": "Asiakas Oy",
        "type": "CUSTOMER",
        "address": {"name": "Asiakas Oy", "street": "Katu 1", "zip": "00100", "city": "Helsinki"},
        "paymentInfo": {"paymentMethod": "BANK_TRANSFER"},
        "invoicingInfo": {"identifier": "1234567-1", "identifierType": "BUSINESS_ID"},
    }
    async with procountor(emulator) as client:
        assert await client.find_business_partner_by_identifier("1234567-1") is None
        created = await client.create_business_partner(partner)
        found = await client.find_business_partner_by_identifier("1234567-1")
        assert found is not None
        patched = await client.patch_business_partner(found["id"], {"name": "Uusi Nimi Oy"}, found["version"])
        with pytest.raises(ProcountorError) as stale:
            await client.patch_business_partner(found["id"], {"name": "X"}, found["version"])

    assert found == created  # found through the identifier header (and inactive ones too)
    assert patched["name"] == "Uusi Nimi Oy"
    assert stale.value.status == 400
    assert stale.value.has_field("version")


async def test_products_are_listed_across_pages(emulator: RunningEmulator) -> None:
    async with procountor(emulator, page_size=2) as client:
        for n in range(5):
            await client.create_product(product_body(f"Tuote {n}"))

        products = await client.list_products()

    assert [p["name"] for p in products] == [f"Tuote {n}" for n in range(5)]
    assert products[0]["price"] == Decimal("0.0125")


async def test_secrets_appear_in_no_exception_repr_or_log(
    emulator: RunningEmulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with structlog.testing.capture_logs() as structured:
        # A wrong API key: Procountor answers 401 to the token request.
        async with procountor(emulator, api_key=SecretStr("wrong-" + API_KEY)) as client:
            with pytest.raises(ProcountorError) as unauthorized:
                await client.list_products()
            texts += [str(unauthorized.value), repr(unauthorized.value), repr(client)]
        # Good credentials, then a retried 401, a 429 and a validation error.
        async with procountor(emulator) as client:
            await client.list_products()
            emulator.inspect("POST", "/tokens/expire")
            emulator.inspect("POST", "/faults", {"status": 429, "times": 1})
            with pytest.raises(ProcountorError) as invalid:
                await client.create_invoice(invoice_body(date="31.1.2025"))
            texts += [str(invalid.value), repr(invalid.value), repr(client), repr(client._config)]
        # Nobody listening: the connection error must not carry the form body either.
        closed = RunningEmulator("http://127.0.0.1:9")
        async with procountor(closed, max_attempts=2) as client:
            with pytest.raises(ProcountorUnavailableError) as unreachable:
                await client.list_products()
            texts += [str(unreachable.value), repr(unreachable.value)]

    assert unauthorized.value.status == 401
    assert invalid.value.status == 400
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(event) for event in structured]
    texts += list(capsys.readouterr())
    assert any("procountor.request.retrying" in t for t in texts)
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
