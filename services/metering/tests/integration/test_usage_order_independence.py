"""Any order, batching and duplication of the same usage events gives the same monthly usage (B-08…B-16, I-07).

The Kafka intake `UsageEventIntake` (the use case `record_usage`) runs directly against one migrated PostgreSQL database (no broker);
each Hypothesis example works in environments of its own, and its result is compared with a small
reference model of the rules written here, independently of metering's code.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_contracts.base import Message
from billing_contracts.usage import (
    DocumentKind,
    EInvoiceReceivedV1,
    EInvoiceSentV1,
    HourEntryRecordedV1,
    InvoiceChannel,
    PayCalculatedV1,
    SignatureCompletedV1,
    UserRole,
    UserRolesChangedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)
from devstack.infra import async_url, create_database, drop_database
from devstack.testing import migrate
from metering.consumers import UsageEventIntake
from metering.domain import Usage, carries_message_fee, counts_as_voucher, is_billable_user
from metering.repository import SqlAlchemyUsageRepository
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory

pytestmark = pytest.mark.integration

# --- the reference model: the rules restated, sharing no code with metering ----------------------

_TZ = ZoneInfo("Europe/Helsinki")

#: B-10, restated from SPEC.md.
_VOUCHERS = {
    "sales_invoice",
    "purchase_invoice",
    "travel_invoice",
    "expense_invoice",
    "payslip",
    "sales_order",
    "quote_order",
    "purchase_order",
    "memo_voucher",
    "vat_calculation",
    "authority_report",
    "mass_letter",
    "payment_reminder",
    "document",
    "direct_bank_transfer",
}
#: B-13: operator connection and bank e-invoice addresses.
_FEE_CHANNELS = {"operator", "bank"}
#: B-16: everything but Johto/Tarkastaja and Henkilökunta Tallennus is paid.
_PAID_ROLES = {"main_user", "custom", "accountant"}


def _month(at: datetime) -> str:
    return at.astimezone(_TZ).strftime("%Y-%m")


def _month_end(month: str) -> datetime:
    year, mon = int(month[:4]), int(month[5:])
    return datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=_TZ)


def reference_usage(events: Sequence[Message], month: str, environments: Sequence[str]) -> dict[str, Usage]:
    """Monthly usage of `environments` from `events`, in any order, with any duplicates."""
    created: dict[tuple[str, str], tuple[datetime, str]] = {}  # earliest creation per voucher (B-09)
    voided: dict[tuple[str, str], datetime] = {}  # earliest void per voucher (B-11)
    payees: set[tuple[str, str, str]] = set()
    fees: dict[tuple[str, str, str], tuple[str, datetime]] = {}
    roles: dict[tuple[str, str], dict[datetime, set[str]]] = {}
    signatures: dict[tuple[str, str], tuple[int, datetime]] = {}
    hours: dict[str, HourEntryRecordedV1] = {}

    def create(env: str, voucher: str, kind: str, at: datetime) -> None:
        if (env, voucher) not in created or at < created[env, voucher][0]:
            created[env, voucher] = (at, kind)

    for e in events:
        match e:
            case VoucherCreatedV1():
                create(e.environment_id, e.voucher_id, e.document_kind.value, e.created_at)
            case VoucherVoidedV1():
                key = (e.environment_id, e.voucher_id)
                voided[key] = min(voided.get(key, e.voided_at), e.voided_at)
            case PayCalculatedV1():
                payees.add((e.environment_id, _month(e.calculated_at), e.person_id))
            case EInvoiceSentV1():
                create(e.environment_id, e.voucher_id, "sales_invoice", e.sent_at)
                fees[e.environment_id, e.voucher_id, "sent"] = (e.channel.value, e.sent_at)
            case EInvoiceReceivedV1():
                create(e.environment_id, e.voucher_id, "purchase_invoice", e.received_at)
                fees[e.environment_id, e.voucher_id, "received"] = (e.channel.value, e.received_at)
            case UserRolesChangedV1():
                roles.setdefault((e.environment_id, e.user_id), {})[e.changed_at] = {r.value for r in e.roles}
            case SignatureCompletedV1():
                signatures[e.environment_id, e.signature_id] = (e.signer_count, e.completed_at)
            case HourEntryRecordedV1():
                if e.entry_id not in hours or e.recorded_at > hours[e.entry_id].recorded_at:
                    hours[e.entry_id] = e
            case _:
                raise AssertionError(f"unexpected {e!r}")

    result: dict[str, Usage] = {}
    end = _month_end(month)
    for env in environments:
        vouchers = sum(
            1
            for (e, v), (at, kind) in created.items()
            if e == env
            and _month(at) == month
            and kind in _VOUCHERS
            and ((e, v) not in voided or _month(voided[e, v]) > month)
        )
        users = 0
        for (owner, _), history in roles.items():
            before_end = [at for at in history if at < end]
            if owner == env and before_end and history[max(before_end)] & _PAID_ROLES:
                users += 1
        billable: dict[str, Decimal] = {}
        for entry in hours.values():
            if entry.environment_id == env and entry.work_date.strftime("%Y-%m") == month and entry.billable:
                product = entry.service_product_code
                billable[product] = billable.get(product, Decimal(0)) + entry.hours
        result[env] = Usage(
            vouchers=vouchers,
            payees=sum(1 for e, m, _ in payees if e == env and m == month),
            einvoices_sent=sum(
                1
                for (e, _, d), (ch, at) in fees.items()
                if e == env and d == "sent" and ch in _FEE_CHANNELS and _month(at) == month
            ),
            einvoices_received=sum(
                1
                for (e, _, d), (ch, at) in fees.items()
                if e == env and d == "received" and ch in _FEE_CHANNELS and _month(at) == month
            ),
            billable_users=users,
            signatures=sum(n for (e, _), (n, at) in signatures.items() if e == env and _month(at) == month),
            billable_hours=dict(sorted(billable.items())),
        )
    return result


# --- the events: facts drawn by Hypothesis, turned into contracts for one environment prefix ------

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=_TZ)
MONTHS = ("2026-09", "2026-10", "2026-11", "2026-12")

#: Instants around the Helsinki month edges and the October DST change, in Helsinki and UTC.
INSTANTS = sorted(
    {
        datetime(2026, 9, 15, 12, 0, tzinfo=_TZ),
        datetime(2026, 9, 30, 23, 59, 59, tzinfo=_TZ),
        datetime(2026, 9, 30, 21, 0, 0, tzinfo=UTC),  # 2026-10-01 00:00 EEST
        datetime(2026, 10, 5, 10, 0, tzinfo=_TZ),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 03:30 EEST, before the clocks go back
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 03:30 EET, after
        datetime(2026, 10, 31, 21, 59, 59, tzinfo=UTC),  # 23:59:59 EET
        datetime(2026, 11, 1, 0, 0, 0, tzinfo=_TZ),
        datetime(2026, 11, 1, 0, 0, 1, tzinfo=_TZ),
        datetime(2026, 11, 17, 9, 0, tzinfo=_TZ),
        datetime(2026, 11, 30, 23, 59, 59, tzinfo=_TZ),
        datetime(2026, 12, 1, 0, 0, tzinfo=_TZ),
        datetime(2026, 12, 10, 8, 0, tzinfo=_TZ),
    }
)
WORK_DATES = (date(2026, 9, 30), date(2026, 10, 1), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 30))
HOURS = tuple(Decimal(h) for h in ("0.25", "1", "7.5", "8", "12.75", "24"))
ROLE_SETS: tuple[frozenset[UserRole], ...] = (
    frozenset(),
    frozenset({UserRole.MANAGEMENT_AUDITOR}),
    frozenset({UserRole.STAFF_ENTRY}),
    frozenset({UserRole.MANAGEMENT_AUDITOR, UserRole.STAFF_ENTRY}),
    frozenset({UserRole.MAIN_USER}),
    frozenset({UserRole.ACCOUNTANT, UserRole.STAFF_ENTRY}),
    frozenset({UserRole.CUSTOM, UserRole.MANAGEMENT_AUDITOR}),
)


@dataclass(frozen=True)
class VoucherFact:
    env: int
    no: int
    kind: DocumentKind
    at: datetime
    emissions: int  # creation events with distinct event ids, same business content
    voids: tuple[datetime, ...]  # void events, at the creation or later (same or later month)


@dataclass(frozen=True)
class Fact:
    """Any other usage fact, already as the contract's content fields apart from the envelope."""

    contract: type[Message]
    env: int
    fields: tuple[tuple[str, object], ...]
    emissions: int


def _prefixed(fields: tuple[tuple[str, object], ...], prefix: str) -> dict[str, object]:
    id_fields = {"voucher_id", "person_id", "payslip_id", "user_id", "signature_id", "entry_id"}
    return {k: f"{prefix}-{v}" if k in id_fields else v for k, v in fields}


def build_events(vouchers: Sequence[VoucherFact], facts: Sequence[Fact], prefix: str) -> list[Message]:
    """The events of the drawn facts, for environments `<prefix>-e<N>`; re-emissions get new event ids."""
    events: list[Message] = []

    def envelope(at: datetime) -> dict[str, Any]:
        return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": "property-test"}

    for v in vouchers:
        env, voucher = f"{prefix}-e{v.env}", f"{prefix}-v{v.no}"
        for n in range(v.emissions):
            events.append(
                VoucherCreatedV1(
                    **envelope(v.at + timedelta(minutes=n)),
                    environment_id=env,
                    voucher_id=voucher,
                    document_kind=v.kind,
                    created_at=v.at,
                )
            )
        for at in v.voids:
            events.append(
                VoucherVoidedV1(**envelope(at), environment_id=env, voucher_id=voucher, voided_at=at)
            )
    for f in facts:
        content = _prefixed(f.fields, prefix)
        for _ in range(f.emissions):
            events.append(
                f.contract.model_validate(
                    envelope(NOW - timedelta(days=1)) | content | {"environment_id": f"{prefix}-e{f.env}"}
                )
            )
    return events


environments = st.integers(min_value=0, max_value=1)
emissions = st.integers(min_value=1, max_value=2)
instants = st.sampled_from(INSTANTS)


@st.composite
def voucher_facts(draw: st.DrawFn) -> list[VoucherFact]:
    facts = []
    for no in range(draw(st.integers(min_value=0, max_value=8))):
        at = draw(instants)
        later = [i for i in INSTANTS if i >= at]
        voids = draw(st.lists(st.sampled_from(later), max_size=2, unique=True))
        kind = draw(st.sampled_from(list(DocumentKind)))
        facts.append(VoucherFact(draw(environments), no, kind, at, draw(emissions), tuple(voids)))
    return facts


@st.composite
def other_facts(draw: st.DrawFn) -> list[Fact]:
    facts: list[Fact] = []
    fields: tuple[tuple[str, object], ...]
    # A void of a voucher that is never created counts nothing.
    if draw(st.booleans()):
        facts.append(
            Fact(
                VoucherVoidedV1,
                draw(environments),
                (("voucher_id", "ghost"), ("voided_at", draw(instants))),
                1,
            )
        )
    for n in range(draw(st.integers(min_value=0, max_value=5))):
        at = draw(instants)
        person = draw(st.sampled_from(["p1", "p2", "p3"]))
        fields = (("payslip_id", f"ps{n}"), ("person_id", person), ("calculated_at", at))
        facts.append(Fact(PayCalculatedV1, draw(environments), fields, draw(emissions)))
    for n in range(draw(st.integers(min_value=0, max_value=6))):
        invoice_contracts: list[type[Message]] = [EInvoiceSentV1, EInvoiceReceivedV1]
        contract = draw(st.sampled_from(invoice_contracts))
        at_field = "sent_at" if contract is EInvoiceSentV1 else "received_at"
        fields = (
            ("voucher_id", f"inv{n}"),
            ("channel", draw(st.sampled_from(list(InvoiceChannel)))),
            (at_field, draw(instants)),
        )
        facts.append(Fact(contract, draw(environments), fields, draw(emissions)))
    for user in range(draw(st.integers(min_value=0, max_value=3))):
        env = draw(environments)
        for at in draw(st.lists(instants, min_size=1, max_size=3, unique=True)):
            fields = (
                ("user_id", f"u{user}"),
                ("roles", sorted(draw(st.sampled_from(ROLE_SETS)))),
                ("changed_at", at),
            )
            facts.append(Fact(UserRolesChangedV1, env, fields, draw(emissions)))
    for n in range(draw(st.integers(min_value=0, max_value=3))):
        fields = (
            ("signature_id", f"sig{n}"),
            ("signer_count", draw(st.integers(min_value=1, max_value=5))),
            ("completed_at", draw(instants)),
        )
        facts.append(Fact(SignatureCompletedV1, draw(environments), fields, draw(emissions)))
    for n in range(draw(st.integers(min_value=0, max_value=4))):
        env = draw(environments)
        # Re-recordings of one entry: each a later `recorded_at`, any of them may change anything.
        for recorded_at in draw(st.lists(instants, min_size=1, max_size=3, unique=True)):
            fields = (
                ("entry_id", f"h{n}"),
                ("employee_id", "emp1"),
                ("service_product_code", draw(st.sampled_from(["CONSULT", "TRAINING"]))),
                ("work_date", draw(st.sampled_from(WORK_DATES))),
                ("hours", draw(st.sampled_from(HOURS))),
                ("billable", draw(st.booleans())),
                ("recorded_at", recorded_at),
            )
            facts.append(Fact(HourEntryRecordedV1, env, fields, 1))
    return facts


@st.composite
def deliveries(draw: st.DrawFn, count: int) -> list[list[int]]:
    """One delivery of `count` events: a permutation with exact duplicates, cut into batches of random sizes."""
    order = list(draw(st.permutations(range(count))))
    duplicates = (
        draw(st.lists(st.integers(min_value=0, max_value=max(count - 1, 0)), max_size=8)) if count else []
    )
    for index in duplicates:
        order.insert(draw(st.integers(min_value=0, max_value=len(order))), index)
    batches: list[list[int]] = []
    while order:
        size = draw(st.integers(min_value=1, max_value=12))
        batches.append(order[:size])
        order = order[size:]
    return batches


# --- the real thing --------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def sessions(postgres_admin_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """One migrated metering database for every example; examples differ by environment prefix."""
    name = f"props_{uuid.uuid4().hex[:12]}"
    url = async_url(create_database(postgres_admin_url, name))
    engine = create_engine(url, pool_size=2)
    try:
        await migrate(url, "metering:migrations")
        yield session_factory(engine)
    finally:
        await engine.dispose()
        drop_database(postgres_admin_url, name)


async def record(
    sessions: async_sessionmaker[AsyncSession], events: Sequence[Message], batches: Sequence[Sequence[int]]
) -> None:
    recorder = UsageEventIntake(FixedClock(NOW))
    for batch in batches:
        async with sessions.begin() as session:
            rejections = await recorder(session, [events[i] for i in batch])
        assert rejections == []


async def stored_usage(
    sessions: async_sessionmaker[AsyncSession], month: str, envs: Sequence[str]
) -> dict[str, Usage]:
    async with sessions() as session:
        return await SqlAlchemyUsageRepository(session).usage(month, list(envs))


_examples = itertools.count()


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(vouchers=voucher_facts(), facts=other_facts(), data=st.data())
async def test_any_order_batching_and_duplication_of_the_same_events_gives_the_reference_monthly_usage(
    sessions: async_sessionmaker[AsyncSession],
    vouchers: list[VoucherFact],
    facts: list[Fact],
    data: st.DataObject,
) -> None:
    """B-08…B-13, B-16, I-07: two independent deliveries of the same facts agree with the rules.

    Each delivery has its own order, batch cut and exact duplicates (the same event object again);
    re-emissions of one business key under new event ids are in the facts themselves.
    """
    example = next(_examples)
    runs = []
    for delivery in ("a", "b"):
        prefix = f"x{example}{delivery}{uuid.uuid4().hex[:6]}"
        events = build_events(vouchers, facts, prefix)
        batches = data.draw(deliveries(len(events)), label=f"delivery {delivery}")
        await record(sessions, events, batches)
        envs = [f"{prefix}-e0", f"{prefix}-e1"]
        runs.append((events, envs))

    for events, envs in runs:
        for month in MONTHS:
            assert await stored_usage(sessions, month, envs) == reference_usage(events, month, envs), month


# --- the reference model itself, on hand-counted examples ----------------------------------------


def _voucher(env: str, voucher: str, at: datetime, kind: DocumentKind = DocumentKind.MEMO_VOUCHER) -> Message:
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="t",
        environment_id=env,
        voucher_id=voucher,
        document_kind=kind,
        created_at=at,
    )


def _void(env: str, voucher: str, at: datetime) -> Message:
    return VoucherVoidedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="t",
        environment_id=env,
        voucher_id=voucher,
        voided_at=at,
    )


def test_the_reference_model_counts_a_hand_made_month_as_the_rules_say() -> None:
    oct5 = datetime(2026, 10, 5, 10, 0, tzinfo=_TZ)
    nov1 = datetime(2026, 11, 1, 0, 0, tzinfo=_TZ)
    events = [
        _voucher("e", "v1", oct5),
        _voucher("e", "v1", oct5),  # same voucher again: one voucher
        _voucher("e", "v2", oct5),
        _void("e", "v2", oct5 + timedelta(days=1)),  # B-11: same month, not counted
        _voucher("e", "v3", oct5),
        _void("e", "v3", nov1),  # B-11: later month, counted
        _voucher("e", "v4", oct5, DocumentKind.ATTACHMENT),  # B-10: not a voucher
        _voucher("e", "v5", nov1),  # November
        EInvoiceReceivedV1(
            event_id=uuid.uuid4(),
            occurred_at=oct5,
            producer="t",
            environment_id="e",
            voucher_id="r1",
            channel=InvoiceChannel.BANK,
            received_at=oct5,
        ),
        UserRolesChangedV1(
            event_id=uuid.uuid4(),
            occurred_at=oct5,
            producer="t",
            environment_id="e",
            user_id="u1",
            roles=[UserRole.ACCOUNTANT],
            changed_at=oct5,
        ),
    ]
    assert reference_usage(events, "2026-10", ["e"]) == {
        "e": Usage(vouchers=3, einvoices_received=1, billable_users=1)
    }
    assert reference_usage(events, "2026-11", ["e"]) == {"e": Usage(vouchers=1, billable_users=1)}


# --- a re-emitted creation whose timestamp differs ------------------------------------------------


async def test_b09_a_voucher_created_twice_counts_in_the_month_of_its_earliest_creation_in_any_delivery_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two creation events of one voucher id (new event ids) straddle the October/November edge.

    Whatever order and batching they arrive in, the voucher is one voucher, in October (the earliest
    creation, as UsageEventIntake already decides within one batch).
    """
    october = datetime(2026, 10, 31, 23, 59, 59, tzinfo=_TZ)
    november = datetime(2026, 11, 1, 0, 0, 1, tzinfo=_TZ)
    prefix = f"twice{uuid.uuid4().hex[:6]}"
    deliveries = {
        f"{prefix}-one-batch": [[0, 1]],
        f"{prefix}-early-first": [[0], [1]],
        f"{prefix}-late-first": [[1], [0]],
    }
    for env, batches in deliveries.items():
        events = [_voucher(env, "v1", october), _voucher(env, "v1", november)]
        await record(sessions, events, batches)
    october_usage = await stored_usage(sessions, "2026-10", list(deliveries))
    november_usage = await stored_usage(sessions, "2026-11", list(deliveries))
    assert {env: u.vouchers for env, u in october_usage.items()} == dict.fromkeys(deliveries, 1)
    assert {env: u.vouchers for env, u in november_usage.items()} == dict.fromkeys(deliveries, 0)


async def test_the_sql_counts_by_the_domain_rules_for_every_kind_channel_and_role(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The rules the unit tests check (counts_as_voucher, carries_message_fee, is_billable_user) are
    # the ones the SQL runs: one environment per document kind, channel and role, every value of
    # each vocabulary, so a value added to a domain constant and not to a query (or the reverse) fails.
    at = datetime(2026, 10, 5, 10, 0, tzinfo=_TZ)
    prefix = f"rules{next(_examples)}"
    events: list[Message] = []
    expected: dict[str, Usage] = {}
    for kind in DocumentKind:
        env = f"{prefix}-doc-{kind.value}"
        events.append(_voucher(env, "v1", at, kind))
        expected[env] = Usage(vouchers=int(counts_as_voucher(kind)))
    for channel in InvoiceChannel:
        env = f"{prefix}-ch-{channel.value}"
        common: dict[str, Any] = {
            "event_id": uuid.uuid4(),
            "occurred_at": at,
            "producer": "t",
            "environment_id": env,
        }
        events.append(EInvoiceSentV1(**common, voucher_id="s1", channel=channel, sent_at=at))
        fee = int(carries_message_fee(channel))
        expected[env] = Usage(vouchers=1, einvoices_sent=fee)
    for role in UserRole:
        env = f"{prefix}-role-{role.value}"
        events.append(
            UserRolesChangedV1(
                event_id=uuid.uuid4(),
                occurred_at=at,
                producer="t",
                environment_id=env,
                user_id="u1",
                roles=[role],
                changed_at=at,
            )
        )
        expected[env] = Usage(billable_users=int(is_billable_user(frozenset({role}))))
    await record(sessions, events, [list(range(len(events)))])
    assert await stored_usage(sessions, "2026-10", sorted(expected)) == dict(sorted(expected.items()))
