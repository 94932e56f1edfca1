"""`python -m benchmarks billing`: a billing run over 100,000 environments, next to PostgreSQL's raw read and write of the same data.

Setup (not measured): a fresh database migrated for invoicing; contracts, their terms, October's
final usage from metering (as `UsageFinalizedV1` would store it), the month close, partner tiers,
and September's billing with a few late adjustments of it, all written straight into the tables
from a seeded, skewed workload. Then, in the same run:

- **run**: `invoicing.billing.service.run_billing` for the November run day, exactly as the service
  runs it: plan, batches of payers, invoices, held lines, corrections, outbox rows, committed;
- **raw read**: asyncpg fetching the same inputs (contracts, terms, October usage, adjustments,
  held lines, tiers) with no processing;
- **raw write**: the rows the run wrote (outcomes, invoices with their documents, billed
  environment-months, held lines, outbox rows) written again into empty copies of their tables,
  by COPY and by 500-row `INSERT … SELECT unnest` batches.

The result is checked: every payer decided once, numbers unique and contiguous, references valid,
totals and VAT recomputed from the lines, every invoice in the outbox once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace

from benchmarks.machine import MIB, describe, lifetime_peak_rss_bytes, peak_rss_bytes, reset_peak_rss
from benchmarks.report import Figure, Report, say
from billing_contracts.references import first_business_id_from
from devstack.infra import async_url, create_database, drop_database, provide_postgres
from invoicing.billing.service import run_billing
from invoicing.calendar import HELSINKI, YearMonth, run_day
from invoicing.prices.loader import sample_price_book
from invoicing.references import is_valid_reference
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory
from service_runtime.logging import configure_logging
from service_runtime.migrations import upgrade

MONTH = YearMonth(2026, 10)
PREVIOUS = MONTH.prev()
RUN_DATE = run_day(MONTH.next())  # Monday 2 November 2026
CENT = Decimal("0.01")

#: Share of environments by package, and the usage each package sees.
PACKAGES = (
    ("kevyt", 0.34),
    ("alku", 0.15),
    ("perus", 0.15),
    ("laaja", 0.05),
    ("jousto", 0.08),
    ("solo", 0.10),
    ("tallennus", 0.09),
    ("allekirjoitus", 0.04),
)
SERVICE_PRODUCTS = ("KIRJANPITO-TUNTI", "PALKANLASKENTA-TUNTI", "KONSULTOINTI-TUNTI")


def business_ids(n: int, start: int = 1_000_000) -> list[str]:
    """`n` distinct valid Finnish business IDs (Y-tunnus), increasing."""
    out: list[str] = []
    body = start
    while len(out) < n:
        made = first_business_id_from(body)
        out.append(made)
        body = int(made[:7]) + 1
    return out


@dataclass
class Workload:
    """The seeded data of one run, as rows for the invoicing tables."""

    contracts: list[tuple[Any, ...]] = field(default_factory=list)
    terms: list[tuple[Any, ...]] = field(default_factory=list)
    usage: list[tuple[Any, ...]] = field(default_factory=list)
    tiers: list[tuple[Any, ...]] = field(default_factory=list)
    adjustments: list[tuple[Any, ...]] = field(default_factory=list)
    september: list[tuple[Any, ...]] = field(default_factory=list)  # billed env-months of September
    september_outcomes: list[tuple[Any, ...]] = field(default_factory=list)
    payers: set[str] = field(default_factory=set)
    packages: Counter[str] = field(default_factory=Counter)
    firms: int = 0


def _figures(rng: random.Random, package: str) -> dict[str, Any]:
    """A month of one environment's usage, skewed: most small, a few large."""
    size = rng.paretovariate(1.6)
    vouchers = int(min(5000, size * {"laaja": 120, "perus": 35, "jousto": 25, "solo": 6}.get(package, 10)))
    hours: dict[str, str] = {}
    if rng.random() < 0.1 and package != "allekirjoitus":
        hours[rng.choice(SERVICE_PRODUCTS)] = str(Decimal(rng.randint(1, 24)) / 2)
    return {
        "vouchers": 0 if package in ("tallennus", "allekirjoitus") else vouchers,
        "payees": 0 if package in ("tallennus", "allekirjoitus") else min(200, int(rng.expovariate(0.4))),
        "einvoices_sent": 0 if package == "allekirjoitus" else int(vouchers * rng.uniform(0.1, 0.4)),
        "einvoices_received": 0 if package == "allekirjoitus" else int(vouchers * rng.uniform(0.1, 0.3)),
        "billable_users": rng.randint(1, 12) if package == "tallennus" else 0,
        "signatures": rng.randint(0, 6) if package == "allekirjoitus" else 0,
        "billable_hours": hours,
    }


def generate(environments: int, seed: int) -> Workload:
    rng = random.Random(seed)
    w = Workload()
    firm_count = max(1, environments // 50)
    w.firms = firm_count
    ids = business_ids(environments + firm_count)
    firm_ids, company_ids = ids[:firm_count], ids[firm_count:]
    now = dt.datetime(2026, 9, 1, 8, tzinfo=HELSINKI)
    address = json.dumps(
        {"street": "Aleksanterinkatu 1", "postal_code": "00100", "city": "Helsinki", "country_code": "FI"}
    )
    einvoice = json.dumps({"address": "003712345678", "operator": "003723327487"})
    names, weights = zip(*PACKAGES, strict=True)
    tiers = ("partner", "silver", "gold", "platinum")
    for f in range(firm_count):
        if rng.random() < 0.6:
            w.tiers.append((f"firm-{f}", "2026-01", rng.choice(tiers), now, "benchmark", uuid.uuid4()))
    for n in range(environments):
        env = f"env-{n:06d}"
        firm = rng.randrange(firm_count)
        own = n < firm_count  # the first environments are the firms' own bookkeeping
        package = "kevyt" if own else rng.choices(names, weights)[0]
        business_id = firm_ids[n] if own else company_ids[n]
        firm_pays = package == "tallennus"
        payer_id = firm_ids[firm] if firm_pays else business_id
        if own:
            firm = n
        # Most started long ago; 1 % start on 1 October (their first month); 1 % end in October (B-27).
        production = (
            dt.date(2026, 10, 1)
            if rng.random() < 0.01
            else dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(900))
        )
        end = dt.date(2026, 10, 31) if rng.random() < 0.01 else None
        reseller = f"firm-{rng.randrange(firm_count)}" if rng.random() < 0.2 else None
        contract_id = f"C-{env}"
        w.contracts.append(
            (
                contract_id,
                env,
                business_id,
                f"Asiakas {n} Oy",
                package,
                production,
                end,
                "accounting_firm" if firm_pays else "company",
                payer_id,
                f"firm-{firm}",
                firm_ids[firm],
                reseller,
                own,
                address,
                "einvoice",
                einvoice,
                None,
                None,
                "termination_noticed" if end else "active",
                now,
                now,
            )
        )
        w.terms.append(
            (
                contract_id,
                None,
                now,
                package,
                True,
                f"firm-{firm}",
                firm_ids[firm],
                "accounting_firm" if firm_pays else "company",
                payer_id,
                True,
            )
        )
        w.payers.add(payer_id)
        w.packages[package] += 1
        if rng.random() < 0.97:  # metering finalizes only environments with usage
            w.usage.append((env, str(MONTH), json.dumps(_figures(rng, package)), now))
        if production < PREVIOUS.first_day:
            w.september.append((env, str(PREVIOUS), payer_id, str(PREVIOUS)))
            if rng.random() < 0.005:  # late usage of September (UsageAdjustedV1)
                before = _figures(rng, package)
                after = dict(before, vouchers=before["vouchers"] + rng.randint(1, 5))
                w.adjustments.append((env, str(PREVIOUS), 1, json.dumps(after), json.dumps(before), now))
    w.september_outcomes = [
        (p, str(PREVIOUS), "issue", None, None, Decimal("0.00"), "run-2026-09", now) for p in sorted(w.payers)
    ]
    return w


SEED_TABLES = {
    "contracts": (
        "contract_id, environment_id, business_id, company_name, package, production_date, end_date, payer_kind, "
        "payer_id, accounting_firm_id, accounting_firm_business_id, reseller_partner_id, own_use, billing_address, "
        "billing_channel, einvoice_address, billing_email, billing_contact, status, created_at, updated_at"
    ),
    "contract_terms": (
        "contract_id, effective_from, requested_at, package, sets_accounting_firm, accounting_firm_id, "
        "accounting_firm_business_id, payer_kind, payer_id, applied"
    ),
    "monthly_usage": "environment_id, month, usage, received_at",
    "partner_tiers": "firm_id, effective_month, tier, changed_at, reason, event_id",
    "usage_adjustments": "environment_id, month, adjustment_no, usage, previous, received_at",
    "billed_environment_months": "environment_id, month, payer_id, billing_period",
    "billing_outcomes": "payer_id, billing_period, outcome, reason, invoice_id, net, run_id, decided_at",
}


async def seed(libpq_url: str, w: Workload) -> None:
    connection = await asyncpg.connect(libpq_url)
    try:
        # JSONB columns take JSON text (asyncpg's own codec).
        for table, rows in (
            ("contracts", w.contracts),
            ("contract_terms", w.terms),
            ("monthly_usage", w.usage),
            ("partner_tiers", w.tiers),
            ("usage_adjustments", w.adjustments),
            ("billed_environment_months", w.september),
            ("billing_outcomes", w.september_outcomes),
        ):
            columns = [c.strip() for c in SEED_TABLES[table].split(",")]
            await connection.copy_records_to_table(
                table, records=rows, columns=columns, schema_name="invoicing"
            )
        await connection.execute(
            "INSERT INTO invoicing.closed_months (month, environment_count, closed_at) VALUES ($1, $2, $3)",
            str(MONTH),
            len(w.usage),
            dt.datetime(2026, 11, 1, 2, tzinfo=HELSINKI),
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


# --- ceilings ---

READS = (
    ("contracts", "SELECT * FROM invoicing.contracts"),
    ("contract_terms", "SELECT * FROM invoicing.contract_terms"),
    ("monthly_usage", "SELECT environment_id, usage FROM invoicing.monthly_usage WHERE month = '2026-10'"),
    ("usage_adjustments", "SELECT * FROM invoicing.usage_adjustments"),
    ("partner_tiers", "SELECT * FROM invoicing.partner_tiers"),
    ("billing_outcomes", "SELECT payer_id FROM invoicing.billing_outcomes WHERE billing_period = '2026-10'"),
)
WRITTEN = (
    ("billing_outcomes", "billing_period = '2026-10'"),
    ("invoices", "billing_period = '2026-10'"),
    ("billed_environment_months", "month = '2026-10'"),
    ("held_lines", "billing_period = '2026-10'"),
    ("outbox", "true"),
)


async def raw_read(libpq_url: str) -> tuple[float, int]:
    connection = await asyncpg.connect(libpq_url)
    try:
        start = time.perf_counter()
        rows = 0
        for _, sql in READS:
            rows += len(await connection.fetch(sql))
        return time.perf_counter() - start, rows
    finally:
        await connection.close()


async def raw_write(libpq_url: str) -> tuple[float, float, int]:
    """The run's rows written again into empty copies of their tables: by COPY, and by 500-row INSERTs."""
    connection = await asyncpg.connect(libpq_url)
    try:
        data: dict[str, tuple[list[str], list[tuple[Any, ...]], list[str]]] = {}
        for table, where in WRITTEN:
            # Identity columns (the outbox id) are generated again, as the run had them generated.
            attributes = await connection.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute "
                "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attidentity = '' "
                "ORDER BY attnum",
                f"invoicing.{table}",
            )
            columns = [a["attname"] for a in attributes]
            names = ", ".join(f'"{c}"' for c in columns)
            records = await connection.fetch(f"SELECT {names} FROM invoicing.{table} WHERE {where}")  # noqa: S608
            data[table] = (columns, [tuple(r) for r in records], [a["t"] for a in attributes])
        total = sum(len(rows) for _, rows, _ in data.values())
        timings = []
        for mode in ("copy", "insert"):
            for table, _ in WRITTEN:
                await connection.execute(f"DROP TABLE IF EXISTS invoicing.raw_{table}")
                await connection.execute(
                    f"CREATE TABLE invoicing.raw_{table} (LIKE invoicing.{table} INCLUDING ALL)"
                )
            start = time.perf_counter()
            if mode == "copy":
                for table, (columns, rows, _) in data.items():
                    if rows:
                        await connection.copy_records_to_table(
                            f"raw_{table}", records=rows, columns=columns, schema_name="invoicing"
                        )
            else:
                # Like the run: one transaction per 500 payers' worth of rows, one INSERT per table.
                statements = {}
                for table, (columns, _, types) in data.items():
                    arrays = ", ".join(f"${i + 1}::{types[i]}[]" for i in range(len(columns)))
                    names = ", ".join(f'"{c}"' for c in columns)
                    statements[table] = (
                        f"INSERT INTO invoicing.raw_{table} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608
                    )
                most = max(len(rows) for _, rows, _ in data.values())
                transactions = max(1, -(-most // 500))
                size = {table: max(1, -(-len(rows) // transactions)) for table, (_, rows, _) in data.items()}
                for at in range(transactions):
                    async with connection.transaction():
                        for table, (columns, rows, _) in data.items():
                            chunk = rows[at * size[table] : (at + 1) * size[table]]
                            if chunk:
                                await connection.execute(
                                    statements[table], *[[r[i] for r in chunk] for i in range(len(columns))]
                                )
            timings.append(time.perf_counter() - start)
        for table, _ in WRITTEN:
            await connection.execute(f"DROP TABLE IF EXISTS invoicing.raw_{table}")
        return timings[0], timings[1], total
    finally:
        await connection.close()


# --- checks ---


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


async def check(libpq_url: str, w: Workload, report: Report, issued: int) -> None:
    connection = await asyncpg.connect(libpq_url)
    try:
        await connection.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        outcomes = await connection.fetch(
            "SELECT payer_id, outcome FROM invoicing.billing_outcomes WHERE billing_period = '2026-10'"
        )
        decided = Counter(r["payer_id"] for r in outcomes)
        report.check(
            "every payer decided exactly once",
            set(decided) == w.payers and max(decided.values()) == 1,
            f"{len(decided):,} of {len(w.payers):,} payers, {dict(Counter(r['outcome'] for r in outcomes))}",
        )
        invoices = await connection.fetch(
            "SELECT invoice_number, reference_number, invoice_date, due_date, total_net, total_vat, document "
            "FROM invoicing.invoices WHERE billing_period = '2026-10' ORDER BY invoice_number"
        )
        numbers = [r["invoice_number"] for r in invoices]
        report.check(
            "invoice numbers unique, increasing and without gaps",
            numbers == list(range(100001, 100001 + len(numbers))) and len(numbers) == issued,
            f"{len(numbers):,} invoices, {numbers[0] if numbers else '-'}…{numbers[-1] if numbers else '-'}",
        )
        bad = 0
        for r in invoices:
            doc = r["document"]
            nets: dict[str, Decimal] = {}
            for ln in doc["lines"]:
                nets[ln["vat_rate"]] = nets.get(ln["vat_rate"], Decimal(0)) + Decimal(ln["net"])
            vat = sum((_cents(n * Decimal(rate) / 100) for rate, n in nets.items()), Decimal(0))
            ok = (
                is_valid_reference(r["reference_number"])
                and r["due_date"] == r["invoice_date"] + dt.timedelta(days=10)
                and sum(nets.values(), Decimal(0)) == r["total_net"]
                and vat == r["total_vat"]
            )
            bad += not ok
        report.check(
            "references valid, due dates +10 days, totals and VAT per rate recomputed from the lines",
            bad == 0,
            f"{bad} of {len(invoices):,} invoices differ",
        )
        published = await connection.fetchval(
            "SELECT count(*) FROM invoicing.outbox WHERE topic = 'invoicing.invoice-issued.v1'"
        )
        report.check(
            "every invoice in the outbox once", published == len(invoices), f"{published:,} InvoiceIssuedV1"
        )
        corrected = await connection.fetchval(
            "SELECT count(*) FROM invoicing.usage_adjustments WHERE billed_in_period = '2026-10'"
        )
        report.check(
            "every late adjustment of September billed once",
            corrected == len(w.adjustments),
            f"{corrected} of {len(w.adjustments)}",
        )
    finally:
        await connection.close()


# --- the benchmark ---


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks billing", description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=100_000, help="customer environments (contracts)")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="payers per transaction (the service's default)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="batches billed at once (the service's default)"
    )
    parser.add_argument("--seed", type=int, default=20261102, help="seed of the generated data")
    parser.add_argument("--json", type=str, help="also write the figures to this file")
    parser.add_argument("--profile", type=str, help="cProfile the run into this file (slows it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_logging(fmt="console", level="WARNING")
    report = Report(parameters={})
    say(f"generating {args.environments:,} environments (seed {args.seed})")
    workload = generate(args.environments, args.seed)
    with provide_postgres() as admin_url:
        name = f"bench_billing_{uuid.uuid4().hex[:8]}"
        libpq_url = create_database(admin_url, name)
        try:
            upgrade(async_url(libpq_url), "invoicing:migrations")
            asyncio.run(_measure(args, workload, report, libpq_url))
        finally:
            drop_database(admin_url, name)
    print(report.render())
    if args.json:
        from pathlib import Path

        report.write_json(Path(args.json))
    return 0 if report.passed else 1


async def _measure(args: argparse.Namespace, w: Workload, report: Report, libpq_url: str) -> None:
    say("seeding the tables (setup, not measured)")
    started = time.perf_counter()
    await seed(libpq_url, w)
    say(f"seeded in {time.perf_counter() - started:.1f} s")
    connection = await asyncpg.connect(libpq_url)
    try:
        postgres_version = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    report.machine = describe(
        postgres_version=f"PostgreSQL {postgres_version}", broker_version="none (no broker in this run)"
    )
    report.parameters = {
        "environments (contracts)": f"{len(w.contracts):,}",
        "payers": f"{len(w.payers):,} ({w.firms:,} accounting firms pay the Tallennus environments)",
        "packages": ", ".join(f"{k} {v:,}" for k, v in w.packages.most_common()),
        "environments with usage": f"{len(w.usage):,}",
        "late adjustments of September": f"{len(w.adjustments):,}",
        "partner tiers": f"{len(w.tiers):,}",
        "billed month / run date": f"{MONTH} / {RUN_DATE}",
        "batch size / workers": f"{args.batch_size} / {args.workers}",
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    engine = create_engine(async_url(libpq_url), pool_size=4)
    sessions = session_factory(engine)
    clock = FixedClock(dt.datetime.combine(RUN_DATE, dt.time(6), tzinfo=HELSINKI))
    batches: list[float] = []
    reset_peak_rss()
    say("the billing run")
    profiler: Any = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        result = await run_billing(
            sessions,
            clock,
            sample_price_book(),
            RUN_DATE,
            batch_size=args.batch_size,
            workers=args.workers,
            on_batch=lambda: batches.append(time.perf_counter()),
        )
    finally:
        await engine.dispose()
    run_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    peak = peak_rss_bytes() or lifetime_peak_rss_bytes()
    say(
        f"run: {run_seconds:.1f} s, {result.invoices_issued:,} invoices, {result.held:,} held, failures {len(result.failures)}"
    )
    say("ceilings: raw read and raw write of the same data")
    read_seconds, read_rows = await raw_read(libpq_url)
    copy_seconds, insert_seconds, written_rows = await raw_write(libpq_url)
    raw_total = read_seconds + insert_seconds
    plan_seconds = (batches[0] - started) if batches else run_seconds
    report.add(
        Figure("billing run (wall)", run_seconds, "s", note="run_billing: plan, every batch committed")
    )
    report.add(
        Figure(
            "  of which planning",
            result.plan_seconds,
            "s",
            note="contract terms of the month, held lines, corrections",
        )
    )
    if batches:
        report.add(
            Figure(
                "  of which until the first batch committed", plan_seconds, "s", note="planning + one batch"
            )
        )
    report.add(
        Figure(
            "  CPU of the service's process",
            cpu_seconds,
            "s",
            note="process_time: Python and driver, not PostgreSQL",
        )
    )
    report.add(Figure("payers billed", len(w.payers) / run_seconds, "payers/s"))
    report.add(
        Figure(
            "raw read of the same inputs", read_seconds, "s", note=f"{read_rows:,} rows fetched by asyncpg"
        )
    )
    report.add(Figure("raw write of the same rows, COPY", copy_seconds, "s", note=f"{written_rows:,} rows"))
    report.add(
        Figure(
            "raw write of the same rows, 500-row INSERTs", insert_seconds, "s", note=f"{written_rows:,} rows"
        )
    )
    report.add(
        Figure(
            "billing run vs raw read + raw INSERT",
            run_seconds,
            "s",
            ceiling=raw_total,
            ceiling_name="raw read + 500-row INSERTs",
        )
    )
    report.add(Figure("RSS peak during the run", peak / MIB, "MiB"))
    report.check("the run finished without failures", not result.failures, f"{len(result.failures)} failures")
    # The goal (60 s) is reported next to the figure, not checked: speed is measured, and
    # the exit code says only whether the run billed correctly.
    report.add(
        Figure("issue-4 goal for the whole run", 60.0, "s", note="met" if run_seconds <= 60 else "not met")
    )
    await check(libpq_url, w, report, result.invoices_issued)


if __name__ == "__main__":
    sys.exit(main())
