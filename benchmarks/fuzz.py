"""`python -m benchmarks fuzz`: the long fuzz run of issue 8 — every consumer and every OpenAPI of the four services.

The same generators as the fuzz tests (`devstack.fuzzing`), with many more inputs: the four
services run in this process on an embedded broker and PostgreSQL (the Procountor emulator
beside them); every topic of every subscription gets valid messages, schema-derived invalid ones
and byte mutations; every operation of every service's OpenAPI gets schema-valid and
schema-invalid requests (schemathesis) over real HTTP. Exit code 0 when every valid message was
applied (or refused by a business rule with its reason), every bad one dead-lettered with a
reason, every group committed to the end, and no request was answered with a 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.report import say
from billing_contracts.registry import TOPICS, all_topic_names
from devstack.fuzzing import ConsumerFuzzResult, HttpFuzzResult, fuzz_consumers, fuzz_openapi
from devstack.infra import (
    KafkaTarget,
    async_url,
    create_database,
    drop_database,
    ensure_topics,
    provide_kafka,
    provide_postgres,
)
from devstack.issuer import DevIssuer
from devstack.testing import migrate, running, serve_http
from invoicing.app import create_app as create_invoicing
from invoicing.calendar import HELSINKI
from invoicing.settings import InvoicingSettings
from metering.app import create_app as create_metering
from metering.settings import MeteringSettings
from partners.app import create_app as create_partners
from partners.settings import PartnersSettings
from procountor_emulator.app import create_app as create_emulator
from procountor_emulator.config import LOCAL_API_KEY, LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, EmulatorConfig
from procountor_sync.app import create_app as create_sync
from procountor_sync.settings import ProcountorSyncSettings
from service_runtime.clock import FixedClock
from service_runtime.host import ServiceHost
from service_runtime.logging import configure_logging


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--valid", type=int, default=20, help="valid messages per topic")
    parser.add_argument(
        "--schema-invalid", type=int, default=40, help="schema-derived invalid messages per topic"
    )
    parser.add_argument(
        "--byte-invalid", type=int, default=24, help="byte mutations per topic (kinds in turn)"
    )
    parser.add_argument("--examples", type=int, default=60, help="requests per OpenAPI operation and mode")
    parser.add_argument("--seed", type=int, default=20261202)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    configure_logging(fmt="console", level="ERROR")
    # The services require tokens (issue 12): the dev issuer runs beside them, as in `make run`.
    with provide_kafka() as kafka, provide_postgres() as admin_url, DevIssuer() as issuer:
        name = f"fuzz_{uuid.uuid4().hex[:8]}"
        libpq_url = create_database(admin_url, name)
        try:
            results = asyncio.run(_run(args, kafka, async_url(libpq_url), issuer))
        finally:
            drop_database(admin_url, name)
    return _report(args, results)


async def _run(
    args: argparse.Namespace, kafka: KafkaTarget, database_url: str, issuer: DevIssuer
) -> dict[str, tuple[ConsumerFuzzResult, HttpFuzzResult, float]]:
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(kafka.bootstrap_servers, {n: partitions.get(n, 1) for n in all_topic_names()})
    for location in ("metering", "invoicing", "partners", "procountor_sync"):
        await migrate(database_url, f"{location}:migrations")
    clock = FixedClock(datetime(2026, 11, 2, 6, 0, tzinfo=HELSINKI))
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers,
        "kafka_enable_idempotence": kafka.enable_idempotence,
        "database_url": SecretStr(database_url),
        "outbox_idle_seconds": 0.1,
        "auth_issuer": issuer.url,
    }
    everything = issuer.all_roles_auth()
    results: dict[str, tuple[ConsumerFuzzResult, HttpFuzzResult, float]] = {}
    engine = create_async_engine(database_url)
    async with AsyncExitStack() as stack:
        procountor_url = await stack.enter_async_context(serve_http(create_emulator(EmulatorConfig())))
        apps = {
            "metering": create_metering(MeteringSettings(**common, auto_close=False), clock),
            "invoicing": create_invoicing(InvoicingSettings(**common), clock),
            "partners": create_partners(PartnersSettings(**common), clock),
            "procountor-sync": create_sync(
                ProcountorSyncSettings(
                    **common,
                    procountor_base_url=f"{procountor_url}/api",
                    procountor_client_id=SecretStr(LOCAL_CLIENT_ID),
                    procountor_client_secret=SecretStr(LOCAL_CLIENT_SECRET),
                    procountor_api_key=SecretStr(LOCAL_API_KEY),
                    delivery_interval_seconds=0.2,
                ),
                clock,
            ),
        }
        say("starting the four services")
        for app in apps.values():
            await stack.enter_async_context(running(app, auth=everything))
        for service, app in apps.items():
            host: ServiceHost = app.state.host
            started = time.monotonic()
            say(f"{service}: fuzzing {sum(len(c.contracts) for c in host.consumers)} consumed topics")
            consumed = await fuzz_consumers(
                host,
                kafka,
                engine,
                seed=args.seed,
                valid=args.valid,
                schema_invalid=args.schema_invalid,
                byte_invalid=args.byte_invalid,
                within=600,
            )
            say(f"{service}: fuzzing its OpenAPI, {args.examples} requests per operation and mode")
            token = await everything.async_token(fresh=True)  # one token per service: long runs outlive one
            async with serve_http(app) as base_url:
                http = await asyncio.to_thread(
                    fuzz_openapi, base_url, examples=args.examples, seed=args.seed, token=token
                )
            results[service] = (consumed, http, time.monotonic() - started)
    await engine.dispose()
    return results


def _report(
    args: argparse.Namespace, results: dict[str, tuple[ConsumerFuzzResult, HttpFuzzResult, float]]
) -> int:
    print(
        f"\nFuzz run, seed {args.seed}: per topic {args.valid} valid, {args.schema_invalid} schema-derived "
        f"invalid, {args.byte_invalid} byte mutations; {args.examples} requests per OpenAPI operation and mode\n"
    )
    header = (
        f"{'service':<16}{'messages':>9}{'valid':>7}{'applied':>8}{'by rule':>8}{'dead-let.':>10}"
        f"{'wrong':>6}{'lag':>5}{'operations':>11}{'requests':>9}{'5xx':>5}{'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for service, (consumed, http, seconds) in results.items():
        print(
            f"{service:<16}{consumed.inputs:>9,}{consumed.valid:>7,}{consumed.applied:>8,}"
            f"{consumed.rejected_by_rule:>8,}{consumed.dead_lettered:>10,}{len(consumed.wrong):>6}"
            f"{consumed.lag:>5}{http.operations:>11}{http.requests:>9,}{len(http.server_errors):>5}{seconds:>8.1f}"
        )
        failed |= bool(consumed.wrong or http.server_errors)
    for service, (consumed, http, _) in results.items():
        statuses = ", ".join(f"{status}: {n:,}" for status, n in sorted(http.by_status.items()))
        failures = ", ".join(f"{kind}: {n:,}" for kind, n in sorted(consumed.by_failure.items()))
        print(f"\n{service}: messages by outcome {failures}; HTTP answers {statuses}")
        for line in [*consumed.wrong[:20], *http.server_errors[:20]]:
            print(f"  WRONG {line}")
    print(f"\nRESULT: {'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0
