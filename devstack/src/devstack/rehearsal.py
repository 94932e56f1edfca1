"""Rehearse billing months: a YAML scenario through the real metering, invoicing and partners rules, with a test clock.

    python -m devstack.rehearsal run scenario.yaml [--out result.json]
    python -m devstack.rehearsal schema            # the JSON Schema of the output
    python -m devstack.rehearsal serve [--port 8090]   # POST /rehearsals (YAML body) → the same JSON

It lives in devstack because it needs the services' code in one process — metering's counting
(SQL over its own tables), invoicing's billing run and partners' tiers and commissions — and
services never import each other (import-linter). Nothing is faked: usage events go through
`metering.consumers.UsageEventIntake`, months close with `metering.service.close_month`, metering's
outbox is handed to invoicing's `UsageIntake` as Kafka would, contract commands go through
`ContractIntake`, and the runs are `invoicing.billing.service.run_billing`. Partner inputs go
through partners' `ProgramIntake`; invoicing's contract states, invoices and run ends are handed
to partners' intakes, and partners' tier changes to invoicing's `PartnerTierIntake`, as Kafka
would. It works in a scratch PostgreSQL database of its own
(`POSTGRES_ADMIN_URL`, Docker, 127.0.0.1:5432 or an embedded server; see `devstack.infra`),
dropped afterwards. Scenario format: docs/rehearsal.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message
from billing_contracts.contracts import ContractSignedV1
from billing_contracts.invoicing import ContractChangedV1, InvoiceIssuedV1
from billing_contracts.partners import CommissionStatementIssuedV1, PartnerTierChangedV1
from billing_contracts.procountor import CustomerChangedInProcountorV1, PaymentReceivedV1
from billing_contracts.registry import TOPICS
from invoicing import tables as invoicing_tables
from invoicing.billing.consumers import PartnerTierIntake, UsageIntake
from invoicing.billing.service import MonthNotClosedError, run_billing
from invoicing.billing.views import held_of_payer, list_invoice_views
from invoicing.calendar import HELSINKI, YearMonth, is_business_day, run_day
from invoicing.contracts.consumers import ContractIntake, ProcountorCustomerIntake
from invoicing.contracts.service import CONTRACT_COMMANDS
from invoicing.contracts.upkeep import refresh_contracts
from invoicing.prices.domain import PriceBook
from invoicing.prices.loader import parse_price_book, sample_price_book
from invoicing.receivables.consumers import ReceivablesIntake
from invoicing.references import reference_for_invoice_number
from metering import tables as metering_tables
from metering.consumers import USAGE_CONTRACTS, UsageEventIntake
from metering.repository import ItemKind, list_items
from metering.service import close_month
from partners import tables as partners_tables
from partners.benefits import load_benefit_book
from partners.consumers import BillingIntake, ProgramIntake
from partners.consumers import ContractIntake as PartnersContractIntake
from partners.service import BILLING_INPUTS, PROGRAM_INPUTS, refresh_standings
from service_runtime.clock import FixedClock
from service_runtime.consumer import Rejection
from service_runtime.database import create_engine, session_factory
from service_runtime.logging import configure_logging

#: Metering's default grace after a month's end before it closes (METERING_CLOSE_GRACE_HOURS).
CLOSE_GRACE = dt.timedelta(hours=2)
RUN_HOUR = 6  # the CronJob's 06:00 Helsinki
_NAMESPACE = uuid.UUID("6f1c9a52-3c3e-4b9e-9a55-5d1f0f4c2b7e")
_TIME_FIELDS = (
    "created_at",
    "voided_at",
    "calculated_at",
    "sent_at",
    "received_at",
    "changed_at",
    "completed_at",
    "recorded_at",
    "requested_at",
    "notice_given_at",
    "approved_at",
)
#: What follows an invoice's life after it was issued (the API's invoice view adds these).
_LIFE = ("status", "paid_amount", "credited_net", "credited_gross", "open_amount")
_BY_NAME: dict[str, type[Message]] = {}
for _spec in TOPICS:
    _BY_NAME[_spec.contract.__name__] = _spec.contract
    _BY_NAME[_spec.contract.message_type] = _spec.contract


class ScenarioError(ValueError):
    """The scenario file is not valid; the message says where."""


# --- output (its JSON Schema is the documented shape) ---


class RunResult(BaseModel):
    """One billing run of the scenario."""

    model_config = ConfigDict(extra="forbid")

    run_date: dt.date = Field(description="Invoice date of the run (06:00 Helsinki on the test clock).")
    billing_month: str = Field(description="The month billed in arrears (B-04).")
    status: str = Field(description="`completed`, `completed_with_failures` or `month_not_closed`.")
    invoices_issued: int
    held: int = Field(description="Payers whose lines were held under the minimum invoice (B-15).")
    zero: int = Field(description="Payers whose lines netted to zero (nothing sent).")
    nothing_to_bill: int
    failures: list[dict[str, str]] = Field(description="Payers set aside, with the reason.")


class HeldResult(BaseModel):
    """What is held for one payer at the end of the scenario (B-15)."""

    model_config = ConfigDict(extra="forbid")

    payer_id: str
    held_net: str = Field(description="Net still held, in euros.")
    held: list[dict[str, Any]] = Field(
        description="Each held batch: billing_period, net, reason, lines, release."
    )


class RefusalResult(BaseModel):
    """A command or event the rules refused, with the reason."""

    model_config = ConfigDict(extra="forbid")

    at: dt.datetime
    type: str
    reason: str


class TierChangeResult(BaseModel):
    """A tier change partners computed from the scenario's partner inputs and contracts (P-05)."""

    model_config = ConfigDict(extra="forbid")

    at: dt.datetime = Field(description="When on the test clock partners recognised it.")
    firm_id: str
    old_tier: str | None
    new_tier: str
    in_program: bool = Field(description="False when the agreement ended (the firm left the program).")
    effective_month: str = Field(description="First month billed with it (P-07).")
    reason: str
    end_customers: int
    certified_experts: int
    authorized_experts: int


# --- money coming back (procountor-sync's side: payments, refunds; B-06) ---


class PaymentResult(BaseModel):
    """A payment the scenario made, and where invoicing put it (B-06)."""

    model_config = ConfigDict(extra="forbid")

    payment_id: str = Field(description="`procountor_payment_id` of the payment (rehearsal-N).")
    payer_business_id: str
    amount: str = Field(description="Paid, in euros.")
    payment_date: dt.date
    allocations: list[dict[str, str]] = Field(description="Each invoice it paid: invoice_id, amount.")
    refunded: str = Field(description="What was left for a refund (B-06), in euros.")


class RefundResult(BaseModel):
    """Money to return to a payer: a payment that found no open invoice to take it (B-06)."""

    model_config = ConfigDict(extra="forbid")

    refund_id: str
    payer_business_id: str
    amount: str
    payment_date: dt.date
    reason: str


class RehearsalResult(BaseModel):
    """The output of a rehearsal: every run, every invoice issued, what is held, what was refused,
    the tier changes and commission statements of the partner program."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(description="The scenario's name.")
    runs: list[RunResult]
    invoices: list[dict[str, Any]] = Field(
        description=(
            "Every invoice issued, in number order: `InvoiceIssuedV1` (contracts/schemas/"
            "invoicing.invoice-issued.v1.json) plus status, paid_amount, credited and open_amount."
        )
    )
    held: list[HeldResult] = Field(description="Payers with held lines, ever (released ones included).")
    refusals: list[RefusalResult]
    tier_changes: list[TierChangeResult] = Field(
        default_factory=list, description="Tier changes computed by partners, in the order they happened."
    )
    commission_statements: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "Commission statements partners made after each month's run (P-08): "
            "`CommissionStatementIssuedV1` (contracts/schemas/partners.commission-statement-issued.v1.json)."
        ),
    )
    payments: list[PaymentResult] = Field(default_factory=list, description="Payments, in the order made.")
    refunds: list[RefundResult] = Field(default_factory=list, description="Refunds recorded (B-06).")


def result_schema() -> dict[str, Any]:
    schema = RehearsalResult.model_json_schema()
    schema["$id"] = "https://billing.procountor.fi/schemas/rehearsal-result.json"
    schema["properties"]["invoices"]["items"] = {
        "$ref": "../contracts/schemas/invoicing.invoice-issued.v1.json"
    }
    schema["properties"]["commission_statements"]["items"] = {
        "$ref": "../contracts/schemas/partners.commission-statement-issued.v1.json"
    }
    return schema


# --- the scenario ---


@dataclass(order=True)
class _Step:
    at: dt.datetime
    order: int
    kind: str = field(compare=False)  # "command", "usage", "tier", "partner", "run", "payment", "procountor"
    message: Message | None = field(default=None, compare=False)
    run_date: dt.date | None = field(default=None, compare=False)


@dataclass
class Scenario:
    name: str
    price_book: PriceBook
    steps: list[_Step]
    first_month: YearMonth


def _aware(value: Any, where: str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(9), tzinfo=HELSINKI)
    if not isinstance(value, dt.datetime):
        raise ScenarioError(f"{where}: expected a timestamp, got {value!r}")
    if value.tzinfo is None:
        raise ScenarioError(f"{where}: a timestamp needs a time-zone offset, e.g. 2026-10-05T10:00:00+03:00")
    return value


def _message(
    raw: Mapping[str, Any], *, where: str, contract: type[Message] | None, index: int, start: dt.datetime
) -> tuple[Message, dt.datetime]:
    """A contract from its fields (envelope filled in) and the moment it reaches the system.

    That moment is `arrives_at` if given (late usage), else the event's own time (`created_at`,
    `requested_at`, …), else the scenario's start.
    """
    data = dict(raw)
    type_name = data.pop("type", None)
    if contract is None:
        if type_name is None or type_name not in _BY_NAME:
            raise ScenarioError(
                f"{where}: `type` must name a contract, e.g. VoucherCreatedV1; got {type_name!r}"
            )
        contract = _BY_NAME[type_name]
    arrives = data.pop("arrives_at", None)
    natural = next((data[f] for f in _TIME_FIELDS if f in data), None)
    happened = _aware(data.get("occurred_at") or natural or start, where)
    at = _aware(arrives, where) if arrives is not None else happened
    data.setdefault("event_id", str(uuid.uuid5(_NAMESPACE, f"{where}:{index}")))
    data.setdefault("occurred_at", happened.isoformat())
    data.setdefault("producer", "rehearsal")
    try:
        return contract.model_validate(data), at
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def parse_scenario(text: str) -> Scenario:
    """A scenario from YAML (docs/rehearsal.md); raises `ScenarioError` saying where it is wrong."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario is a mapping")
    unknown = set(raw) - {
        "name",
        "start",
        "price_list",
        "contracts",
        "changes",
        "tiers",
        "partners",
        "usage",
        "runs",
        "expect",
        "payments",
        "procountor_changes",
    }
    if unknown:
        raise ScenarioError(f"unknown keys {sorted(unknown)}")
    runs: list[tuple[dt.date, bool]] = []  # (day, daily trigger?)
    for i, entry in enumerate(raw.get("runs") or []):
        if isinstance(entry, dict) and set(entry) == {"daily"}:
            first, _, last = str(entry["daily"]).partition("..")
            day, end = dt.date.fromisoformat(first.strip()), dt.date.fromisoformat(last.strip())
            while day <= end:
                runs.append((day, True))
                day += dt.timedelta(days=1)
        elif isinstance(entry, dt.date | str):
            runs.append((dt.date.fromisoformat(str(entry)), False))
        else:
            raise ScenarioError(f"runs[{i}]: a date, or {{daily: FIRST..LAST}} for the daily trigger")
    if not runs:
        raise ScenarioError("`runs` needs at least one run date")
    contracts = raw.get("contracts") or []
    productions = [
        dt.date.fromisoformat(str(c["production_date"])) for c in contracts if "production_date" in c
    ]
    first_month = YearMonth.of(min([*productions, runs[0][0]])).prev()
    start = (
        _aware(raw["start"], "start")
        if "start" in raw
        else dt.datetime.combine(first_month.first_day, dt.time(8), tzinfo=HELSINKI)
    )
    price = raw.get("price_list", "sample")
    if price == "sample":
        book = sample_price_book()
    elif isinstance(price, dict):
        book = parse_price_book(yaml.safe_dump(price))
    else:
        book = parse_price_book(Path(str(price)).read_text(encoding="utf-8"))
    steps: list[_Step] = []
    order = 0

    def add(step: _Step) -> None:
        nonlocal order
        step.order = order
        order += 1
        steps.append(step)

    for i, c in enumerate(contracts):
        data = {
            "billing_address": {"street": "Testikatu 1", "postal_code": "00100", "city": "Helsinki"}
        } | dict(c)
        if data.get("billing_channel", "einvoice") == "einvoice":
            data.setdefault("einvoice_address", {"address": "003712345678", "operator": "003723327487"})
        message, at = _message(data, where=f"contracts[{i}]", contract=ContractSignedV1, index=i, start=start)
        add(_Step(at, 0, "command", message))
    for i, c in enumerate(raw.get("changes") or []):
        message, at = _message(c, where=f"changes[{i}]", contract=None, index=i, start=start)
        if type(message) not in CONTRACT_COMMANDS:
            raise ScenarioError(f"changes[{i}]: {type(message).__name__} is not a contract command")
        add(_Step(at, 0, "command", message))
    for i, c in enumerate(raw.get("tiers") or []):
        message, at = _message(c, where=f"tiers[{i}]", contract=PartnerTierChangedV1, index=i, start=start)
        add(_Step(at, 0, "tier", message))
    for step in _partner_steps(raw, start):
        add(step)
    for i, u in enumerate(raw.get("usage") or []):
        message, at = _message(u, where=f"usage[{i}]", contract=None, index=i, start=start)
        if type(message) not in USAGE_CONTRACTS:
            raise ScenarioError(f"usage[{i}]: {type(message).__name__} is not a usage event")
        add(_Step(at, 0, "usage", message))
    for step in _money_steps(raw, start):
        add(step)
    for run_date, daily in runs:
        at = dt.datetime.combine(run_date, dt.time(RUN_HOUR), tzinfo=HELSINKI)
        add(_Step(at, 0, "daily" if daily else "run", run_date=run_date))
    steps.sort()
    return Scenario(str(raw.get("name", "scenario")), book, steps, first_month)


def _money_steps(raw: Mapping[str, Any], start: dt.datetime) -> list[_Step]:
    """Payments and Procountor-side customer changes at a moment on the clock (procountor-sync's inputs).

    A payment is `{at, payer, amount, payment_date?, invoice_number?}`: what procountor-sync would
    publish as `PaymentReceivedV1` when Procountor reports it; `invoice_number` names the invoice it
    was paid to (its reference), else invoicing applies it to the payer's oldest open invoices.
    A Procountor change is `CustomerChangedInProcountorV1`'s fields with `at` (B-22).
    """
    steps: list[_Step] = []
    for i, entry in enumerate(raw.get("payments") or []):
        where = f"payments[{i}]"
        if not isinstance(entry, dict) or not {"at", "payer", "amount"} <= set(entry):
            raise ScenarioError(f"{where}: a payment needs at, payer and amount")
        at = _aware(entry["at"], where)
        number = entry.get("invoice_number")
        data = {
            "procountor_payment_id": f"rehearsal-{i + 1}",
            "procountor_invoice_id": "rehearsal",
            "payer_business_id": entry["payer"],
            "amount": str(entry["amount"]),
            "payment_date": str(entry.get("payment_date") or at.date().isoformat()),
            "reference_number": None if number is None else reference_for_invoice_number(int(number)),
            "occurred_at": at.isoformat(),
        }
        message, _ = _message(data, where=where, contract=PaymentReceivedV1, index=i, start=start)
        steps.append(_Step(at, 0, "payment", message))
    for i, entry in enumerate(raw.get("procountor_changes") or []):
        where = f"procountor_changes[{i}]"
        data = dict(entry)
        at = _aware(data.pop("at", None) or start, where)
        data.setdefault("payer_id", data.get("business_id"))
        data.setdefault("procountor_customer_id", "rehearsal")
        data.setdefault("changed_at", at.isoformat())
        data.setdefault("occurred_at", at.isoformat())
        message, _ = _message(data, where=where, contract=CustomerChangedInProcountorV1, index=i, start=start)
        steps.append(_Step(at, 0, "procountor", message))
    return steps


async def _money_results(session: AsyncSession) -> tuple[list[PaymentResult], list[RefundResult]]:
    p, r = invoicing_tables.payments.c, invoicing_tables.refunds.c
    payments = [
        PaymentResult(
            payment_id=row.procountor_payment_id,
            payer_business_id=row.payer_business_id,
            amount=format(row.amount, "f"),
            payment_date=row.payment_date,
            allocations=list(row.allocations),
            refunded=format(row.refunded, "f"),
        )
        for row in (
            await session.execute(
                select(invoicing_tables.payments).order_by(p.received_at, p.procountor_payment_id)
            )
        )
    ]
    refunds = [
        RefundResult(
            refund_id=row.refund_id,
            payer_business_id=row.payer_business_id,
            amount=format(row.amount, "f"),
            payment_date=row.payment_date,
            reason=row.reason,
        )
        for row in (
            await session.execute(select(invoicing_tables.refunds).order_by(r.created_at, r.refund_id))
        )
    ]
    return payments, refunds


# --- running it ---


async def _relay_metering_to_invoicing(sessions: async_sessionmaker[AsyncSession], clock: FixedClock) -> None:
    """Hand metering's outbox to invoicing's consumer, as the broker would (then empty it)."""
    outbox = metering_tables.runtime_tables.outbox
    contracts = {spec.name: spec.contract for spec in TOPICS}
    async with sessions.begin() as session:
        rows = (
            await session.execute(select(outbox.c.id, outbox.c.topic, outbox.c.value).order_by(outbox.c.id))
        ).all()
        messages = [contracts[r.topic].model_validate_json(r.value) for r in rows]
        if messages:
            await UsageIntake(clock)(session, messages)
            await session.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))


@dataclass
class _Closer:
    """Metering's month closer on the test clock: each month closes at its end plus the grace."""

    next_month: YearMonth

    async def close_due(self, sessions: async_sessionmaker[AsyncSession], clock: FixedClock) -> None:
        while True:
            end = dt.datetime.combine(self.next_month.next().first_day, dt.time(), tzinfo=HELSINKI)
            if clock.now() < end + CLOSE_GRACE:
                return
            await close_month(sessions, clock, str(self.next_month), grace=CLOSE_GRACE)
            self.next_month = self.next_month.next()


async def rehearse_in(database_url: str, scenario: Scenario) -> RehearsalResult:
    """Play the scenario on a database migrated for metering, invoicing and partners (and otherwise empty)."""
    engine = create_engine(database_url, pool_size=4)
    sessions = session_factory(engine)
    clock = FixedClock(scenario.steps[0].at)
    closer = _Closer(scenario.first_month)
    runs: list[RunResult] = []
    refusals: list[RefusalResult] = []
    program = _PartnerProgram()
    try:
        for step in scenario.steps:
            clock.set(step.at)
            await closer.close_due(sessions, clock)
            await _relay_metering_to_invoicing(sessions, clock)
            await program.relay(sessions, clock)
            if step.kind in ("run", "daily") and step.run_date is not None:
                day = step.run_date
                # The CronJob's trigger: business days from the month's first one (B-03).
                if step.kind == "daily" and (day < run_day(YearMonth.of(day)) or not is_business_day(day)):
                    continue
                await refresh_contracts(sessions, clock)
                await program.relay(sessions, clock)  # contract states of today, tiers of today
                runs.append(await _run(sessions, clock, scenario.price_book, day))
                await program.relay(sessions, clock)  # the run's invoices and its end: statements
                continue
            assert step.message is not None
            use_case: Any = {
                "command": ContractIntake(clock),
                "tier": PartnerTierIntake(),
                "partner": ProgramIntake(clock),
                "usage": UsageEventIntake(clock),
                "payment": ReceivablesIntake(clock),
                "procountor": ProcountorCustomerIntake(clock),
            }[step.kind]
            async with sessions.begin() as session:
                rejected = list(await use_case(session, [step.message]))
                if step.kind == "partner":
                    # Partners parks an input that waits for what it needs (a dead letter only if
                    # that never comes): the rehearsal lists it as refused, with the reason.
                    rejected += await _parked(session, step.message.event_id)
            refusals += [
                RefusalResult(at=step.at, type=type(step.message).__name__, reason=r.reason) for r in rejected
            ]
            await _relay_metering_to_invoicing(sessions, clock)
            await program.relay(sessions, clock)
        async with sessions() as session:
            # Re-read through the contract, so that the JSON keeps the contract's field order.
            invoices = [
                InvoiceIssuedV1.model_validate(view).model_dump(mode="json")
                | {k: view[k] for k in _LIFE if k in view}
                for view in await list_invoice_views(session, limit=100_000)
            ]
            h = invoicing_tables.held_lines.c
            payers = sorted(set((await session.execute(select(h.payer_id))).scalars()))
            held = [HeldResult(**await held_of_payer(session, p)) for p in payers]
            payments, refunds = await _money_results(session)
    finally:
        await engine.dispose()
    return RehearsalResult(
        scenario=scenario.name,
        runs=runs,
        invoices=invoices,
        held=held,
        refusals=refusals,
        payments=payments,
        refunds=refunds,
        tier_changes=program.tier_changes,
        commission_statements=program.statements,
    )


async def _parked(session: AsyncSession, event_id: uuid.UUID) -> list[Rejection]:
    p = partners_tables.parked_inputs.c
    rows = await session.execute(
        select(p.rule, p.reason).where(p.event_id == event_id, p.applied_at.is_(None))
    )
    return [
        Rejection(event_id, f"{rule}: {reason} (parked: applied if what it needs arrives in time)")
        for rule, reason in rows.tuples()
    ]


# --- the partner program (issue 10): partners' own code between invoicing's outbox and its tier intake ---

_PARTNER_INPUTS = {c.__name__: c for c in PROGRAM_INPUTS} | {c.message_type: c for c in PROGRAM_INPUTS}


def _partner_steps(raw: Mapping[str, Any], start: dt.datetime) -> list[_Step]:
    """The `partners` section: partner-program inputs (`type` = a partner-program contract), each at
    its `occurred_at` (or `arrives_at`), else at the scenario's start. Refused: tiers given in
    `tiers` for a firm whose tier the partner inputs compute."""
    steps = []
    for i, item in enumerate(raw.get("partners") or []):
        type_name = item.get("type") if isinstance(item, dict) else None
        if type_name not in _PARTNER_INPUTS:
            raise ScenarioError(
                f"partners[{i}]: `type` must name a partner-program input, one of "
                f"{sorted(c.__name__ for c in PROGRAM_INPUTS)}; got {type_name!r}"
            )
        message, at = _message(item, where=f"partners[{i}]", contract=None, index=i, start=start)
        steps.append(_Step(at, 0, "partner", message))
    computed = {getattr(s.message, "firm_id", None) for s in steps}
    given = {t.get("firm_id") for t in raw.get("tiers") or [] if isinstance(t, dict)}
    if computed & given:
        raise ScenarioError(
            f"tiers: {sorted(str(f) for f in computed & given)} get their tiers from the partner inputs; "
            "give a firm's tier in `tiers` or compute it from `partners`, not both"
        )
    return steps


@dataclass
class _PartnerProgram:
    """Carries invoicing's outbox to partners and partners' tier changes back, as the broker would."""

    invoicing_seen: int = 0
    partners_seen: int = 0
    tier_changes: list[TierChangeResult] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)

    async def relay(self, sessions: async_sessionmaker[AsyncSession], clock: FixedClock) -> None:
        contracts = {spec.name: spec.contract for spec in TOPICS}
        benefits = load_benefit_book()
        await refresh_standings(sessions, clock)  # dated facts (an agreement ending) take effect
        while True:
            outbox = invoicing_tables.runtime_tables.outbox
            async with sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(outbox.c.id, outbox.c.topic, outbox.c.value)
                        .where(outbox.c.id > self.invoicing_seen)
                        .order_by(outbox.c.id)
                    )
                ).all()
                for row in rows:
                    contract = contracts[row.topic]
                    if contract is ContractChangedV1:
                        await PartnersContractIntake(clock)(
                            session, [contract.model_validate_json(row.value)]
                        )
                    elif contract in BILLING_INPUTS:
                        await BillingIntake(clock, benefits)(
                            session, [contract.model_validate_json(row.value)]
                        )
                if rows:
                    self.invoicing_seen = rows[-1].id
            outbox = partners_tables.runtime_tables.outbox
            async with sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(outbox.c.id, outbox.c.topic, outbox.c.value)
                        .where(outbox.c.id > self.partners_seen)
                        .order_by(outbox.c.id)
                    )
                ).all()
                for row in rows:
                    published = contracts.get(row.topic)
                    if published is PartnerTierChangedV1:
                        change = PartnerTierChangedV1.model_validate_json(row.value)
                        await PartnerTierIntake()(session, [change])
                        self.tier_changes.append(_tier_change_result(change))
                    elif published is CommissionStatementIssuedV1:
                        statement = CommissionStatementIssuedV1.model_validate_json(row.value)
                        self.statements.append(
                            statement.model_dump(mode="json", exclude={"event_id", "occurred_at", "producer"})
                        )
                if rows:
                    self.partners_seen = rows[-1].id
            if not rows:
                return  # tier changes may have made invoicing announce nothing new: settled


def _tier_change_result(change: PartnerTierChangedV1) -> TierChangeResult:
    return TierChangeResult(
        at=change.occurred_at,
        firm_id=change.firm_id,
        old_tier=change.old_tier.value if change.old_tier else None,
        new_tier=change.new_tier.value,
        in_program=change.in_program,
        effective_month=change.effective_month,
        reason=change.reason,
        end_customers=change.end_customers,
        certified_experts=change.certified_experts,
        authorized_experts=change.authorized_experts,
    )


@dataclass
class _MeteringItems:
    """Metering's item lists straight from its tables (what its API serves), for B-01 and B-19."""

    sessions: async_sessionmaker[AsyncSession]

    async def items(self, environment_id: str, month: str, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        async with self.sessions() as session:
            while True:
                page = await list_items(
                    session, ItemKind(kind), environment_id, month, limit=1000, cursor=cursor
                )
                found += page.items
                cursor = page.next_cursor
                if cursor is None:
                    return found


async def _run(
    sessions: async_sessionmaker[AsyncSession], clock: FixedClock, book: PriceBook, run_date: dt.date
) -> RunResult:
    try:
        report = await run_billing(sessions, clock, book, run_date, items=_MeteringItems(sessions))
    except MonthNotClosedError:
        return RunResult(
            run_date=run_date,
            billing_month=str(YearMonth.of(run_date).prev()),
            status="month_not_closed",
            invoices_issued=0,
            held=0,
            zero=0,
            nothing_to_bill=0,
            failures=[],
        )
    return RunResult(
        run_date=run_date,
        billing_month=report.billing_month,
        status=report.status,
        invoices_issued=report.invoices_issued,
        held=report.held,
        zero=report.zero,
        nothing_to_bill=report.nothing_to_bill,
        failures=report.failures,
    )


async def rehearse(text: str, *, admin_url: str | None = None) -> RehearsalResult:
    """Play a scenario in a scratch database of its own (created, migrated, dropped)."""
    from devstack.infra import async_url, create_database, drop_database, provide_postgres
    from devstack.testing import migrate

    scenario = parse_scenario(text)

    async def play(admin: str) -> RehearsalResult:
        name = f"rehearsal_{uuid.uuid4().hex[:12]}"
        url = async_url(await asyncio.to_thread(create_database, admin, name))
        try:
            await migrate(url, "metering:migrations")
            await migrate(url, "invoicing:migrations")
            await migrate(url, "partners:migrations")
            return await rehearse_in(url, scenario)
        finally:
            await asyncio.to_thread(drop_database, admin, name)

    if admin_url is not None:
        return await play(admin_url)
    with provide_postgres() as admin:
        return await play(admin)


def _json(result: RehearsalResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def http_app() -> Any:
    """`POST /rehearsals` with a scenario as the YAML body: the rehearsal's JSON (the HTTP dry run)."""
    from fastapi import FastAPI, HTTPException, Request

    app = FastAPI(title="Billing rehearsal", description="Rehearse billing months: real rules, test clock.")

    @app.post("/rehearsals")
    async def post(request: Request) -> Any:
        try:
            result = await rehearse((await request.body()).decode())
        except ScenarioError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return json.loads(_json(result))

    @app.get("/rehearsals/schema")
    async def schema() -> dict[str, Any]:
        return result_schema()

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.rehearsal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="rehearse a scenario file and print the result as JSON")
    run.add_argument("scenario", type=Path)
    run.add_argument("--out", type=Path, help="also write the JSON here")
    sub.add_parser("schema", help="print the JSON Schema of the result")
    serve = sub.add_parser("serve", help="serve POST /rehearsals")
    serve.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    # The JSON goes to stdout; the services' logs, warnings and up, to stderr.
    configure_logging("console", "WARNING")
    if args.command == "schema":
        print(json.dumps(result_schema(), indent=2))
        return 0
    if args.command == "serve":
        import uvicorn

        uvicorn.run(http_app(), host="127.0.0.1", port=args.port)
        return 0
    try:
        result = asyncio.run(rehearse(args.scenario.read_text(encoding="utf-8")))
    except ScenarioError as exc:
        print(f"scenario error: {exc}", file=sys.stderr)
        return 2
    output = _json(result)
    if args.out:
        args.out.write_text(output + "\n", encoding="utf-8")
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
