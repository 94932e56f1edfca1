"""`python -m benchmarks close`: metering's month close over a country-sized month, next to PostgreSQL's own read of it.

The month's raw usage (100,000 environments × 100 events = 10 million rows by default) and as
much history before it are written straight into metering's tables with `INSERT … SELECT
generate_series` (loading is setup, not measured). Then, in the same run:

- **ceiling**: the time PostgreSQL needs to read the month's voucher rows and group them per
  environment from a table holding only them (what an ideal month partition would give);
- **close**: `metering.service.close_month` itself: every environment's usage computed from the
  raw tables, finalized rows and one outbox message per environment written, committed.

The result is checked against the generated counts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace

from benchmarks.machine import describe
from benchmarks.report import Figure, Report, say
from devstack.infra import async_url, create_database, drop_database, provide_postgres
from metering.domain import month_end, month_start, previous_month
from metering.service import close_month
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory
from service_runtime.logging import configure_logging
from service_runtime.migrations import upgrade

MONTH = "2026-10"
GRACE = timedelta(hours=2)

#: Of every 100 events of an environment-month: vouchers created (of which 5 voided in the
#: month), persons paid, e-invoices sent through an operator (each also a voucher row).
VOUCHERS, VOIDED, PAYEES, EINVOICES = 85, 5, 8, 7


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks close", description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=100_000)
    parser.add_argument(
        "--history-months", type=int, default=1, help="earlier months of the same size already stored"
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Loaded:
    rows_per_month: int
    seconds: float


async def load(libpq_url: str, month: str, environments: int) -> Loaded:
    """One month of usage for every environment, spread over the month as it would arrive."""
    start = month_start(month)
    span = (month_end(month) - start).total_seconds()
    per_env = VOUCHERS + EINVOICES
    c = await asyncpg.connect(libpq_url)
    began = time.perf_counter()
    try:
        # Row g belongs to environment g % E, so that consecutive rows interleave environments
        # like real traffic; its creation time grows with g.
        await c.execute(
            f"""
            INSERT INTO metering.vouchers (environment_id, voucher_id, document_kind, created_at, month,
                                           voided_at, void_month)
            SELECT 'env-' || lpad((g % $1)::text, 6, '0'), '{month}-V' || g,
                   CASE WHEN (g / $1) % {per_env} >= {VOUCHERS} THEN 'sales_invoice' ELSE 'memo_voucher' END,
                   $2::timestamptz + (g::float8 / ($1 * {per_env}) * $3) * interval '1 second', $4::text,
                   CASE WHEN (g / $1) % {per_env} < {VOIDED}
                        THEN $2::timestamptz + (g::float8 / ($1 * {per_env}) * $3) * interval '1 second' END,
                   CASE WHEN (g / $1) % {per_env} < {VOIDED} THEN $4::text END
            FROM generate_series(0, $1 * {per_env} - 1) AS g
            """,  # noqa: S608  # numbers and a month of our own, no input
            environments,
            start,
            span,
            month,
        )
        await c.execute(
            """
            INSERT INTO metering.einvoice_messages (environment_id, voucher_id, direction, channel, at, month)
            SELECT environment_id, voucher_id, 'sent', 'operator', created_at, month
            FROM metering.vouchers WHERE month = $1 AND document_kind = 'sales_invoice'
            """,
            month,
        )
        await c.execute(
            f"""
            INSERT INTO metering.payees (environment_id, month, person_id, first_payslip_id, first_calculated_at)
            SELECT 'env-' || lpad((g % $1)::text, 6, '0'), $2, 'P' || (g / $1), '{month}-S' || g,
                   $3::timestamptz + interval '24 days'
            FROM generate_series(0, $1 * {PAYEES} - 1) AS g
            """,  # noqa: S608
            environments,
            month,
            start,
        )
        await c.execute("ANALYZE metering.vouchers, metering.einvoice_messages, metering.payees")
    finally:
        await c.close()
    return Loaded(environments * (per_env + EINVOICES + PAYEES), time.perf_counter() - began)


async def ceiling(libpq_url: str, month: str) -> float:
    """Seconds to read and group the month's voucher rows from a table holding only them."""
    c = await asyncpg.connect(libpq_url)
    try:
        await c.execute(
            "CREATE TABLE metering.bench_month AS SELECT * FROM metering.vouchers WHERE month = $1", month
        )
        await c.execute("VACUUM ANALYZE metering.bench_month")
        began = time.perf_counter()
        await c.fetch(
            "SELECT environment_id, count(*) FILTER (WHERE void_month IS DISTINCT FROM month)"
            " FROM metering.bench_month GROUP BY environment_id"
        )
        seconds = time.perf_counter() - began
        await c.execute("DROP TABLE metering.bench_month")
        return seconds
    finally:
        await c.close()


def main(argv: list[str]) -> int:
    args = parse(argv)
    configure_logging(fmt="console", level="WARNING")
    report = Report(parameters={})
    with provide_postgres() as admin_url:
        name = f"bench_close_{uuid.uuid4().hex[:8]}"
        libpq_url = create_database(admin_url, name)
        try:
            upgrade(async_url(libpq_url), "metering:migrations")
            asyncio.run(_run(args, report, libpq_url))
        finally:
            drop_database(admin_url, name)
    print(report.render())
    return 0 if report.passed else 1


async def _run(args: argparse.Namespace, report: Report, libpq_url: str) -> None:
    c = await asyncpg.connect(libpq_url)
    try:
        version = str(await c.fetchval("SHOW server_version"))
    finally:
        await c.close()
    report.machine = describe(
        postgres_version=f"PostgreSQL {version}", broker_version="(none: no broker needed)"
    )
    months = [MONTH]
    for _ in range(args.history_months):
        months.insert(0, previous_month(months[0]))
    loaded = None
    for month in months:
        say(f"loading {month}: {args.environments:,} environments × 100 events")
        loaded = await load(libpq_url, month, args.environments)
        say(f"loaded {loaded.rows_per_month:,} rows in {loaded.seconds:.1f} s")
    assert loaded is not None
    report.parameters = {
        "environments": f"{args.environments:,}",
        "raw rows per month": f"{loaded.rows_per_month:,} (vouchers, e-invoice messages, payees)",
        "months stored": ", ".join(months),
        "month closed": MONTH,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    report.add(Figure("load one month (setup)", loaded.rows_per_month / loaded.seconds, "rows/s"))

    say("ceiling: PostgreSQL reads and groups the month's vouchers from a table of their own")
    raw = await ceiling(libpq_url, MONTH)
    ceiling_figure = report.add(
        Figure("C raw read + group of the month's vouchers", raw, "s", note="a table holding only that month")
    )

    say(f"closing {MONTH}")
    engine = create_engine(async_url(libpq_url), pool_size=2)
    try:
        clock = FixedClock(month_end(MONTH) + GRACE + timedelta(minutes=1))
        began = time.perf_counter()
        result = await close_month(session_factory(engine), clock, MONTH, grace=GRACE)
        seconds = time.perf_counter() - began
    finally:
        await engine.dispose()
    report.add(
        Figure(
            f"month close {MONTH}",
            seconds,
            "s",
            ceiling_figure.value,
            "C",
            note="close_month: usage of every environment from the raw tables, finalized rows and outbox, one commit",
        )
    )
    c = await asyncpg.connect(libpq_url)
    try:
        counted = await c.fetchval(
            "SELECT sum((usage->>'vouchers')::int) FROM metering.finalized_usage WHERE month = $1", MONTH
        )
        fees = await c.fetchval(
            "SELECT sum((usage->>'einvoices_sent')::int) FROM metering.finalized_usage WHERE month = $1",
            MONTH,
        )
        payees = await c.fetchval(
            "SELECT sum((usage->>'payees')::int) FROM metering.finalized_usage WHERE month = $1", MONTH
        )
        outbox = await c.fetchval("SELECT count(*) FROM metering.outbox")
    finally:
        await c.close()
    n = args.environments
    report.check(
        "every environment finalized", result.environment_count == n, f"{result.environment_count:,}"
    )
    expected_vouchers = n * (VOUCHERS + EINVOICES - VOIDED)
    report.check(
        "vouchers = created - voided in the month (B-11)",
        counted == expected_vouchers,
        f"{counted:,} vs {expected_vouchers:,}",
    )
    report.check("fee e-invoices (B-13)", fees == n * EINVOICES, f"{fees:,} vs {n * EINVOICES:,}")
    report.check("distinct payees (B-12)", payees == n * PAYEES, f"{payees:,} vs {n * PAYEES:,}")
    report.check("one outbox message per environment + the month marker", outbox == n + 1, f"{outbox:,}")
