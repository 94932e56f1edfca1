"""A seeded month of usage events for many environments, serialised once, with the figures it must produce."""

from __future__ import annotations

import random
import uuid
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

from billing_contracts.base import Message, wire_json
from billing_contracts.registry import topic_for
from billing_contracts.usage import (
    DocumentKind,
    EInvoiceSentV1,
    InvoiceChannel,
    PayCalculatedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)

HELSINKI = ZoneInfo("Europe/Helsinki")
#: The billing month of the data; October 2026 holds a DST change (25 Oct), so Helsinki months matter.
MONTH = "2026-10"
MONTH_START = datetime(2026, 10, 1, tzinfo=HELSINKI)
MONTH_END = datetime(2026, 11, 1, tzinfo=HELSINKI)
PRODUCER = "benchmark"

#: SPEC B-10, written out here rather than imported so that the check does not reuse the code it checks.
B10_KINDS: tuple[DocumentKind, ...] = (
    DocumentKind.SALES_INVOICE,
    DocumentKind.PURCHASE_INVOICE,
    DocumentKind.TRAVEL_INVOICE,
    DocumentKind.EXPENSE_INVOICE,
    DocumentKind.PAYSLIP,
    DocumentKind.SALES_ORDER,
    DocumentKind.QUOTE_ORDER,
    DocumentKind.PURCHASE_ORDER,
    DocumentKind.MEMO_VOUCHER,
    DocumentKind.VAT_CALCULATION,
    DocumentKind.AUTHORITY_REPORT,
    DocumentKind.MASS_LETTER,
    DocumentKind.PAYMENT_REMINDER,
    DocumentKind.DOCUMENT,
    DocumentKind.DIRECT_BANK_TRANSFER,
)
_B10_WEIGHTS = (30, 30, 4, 6, 6, 3, 2, 3, 5, 1, 1, 1, 2, 5, 1)
NON_VOUCHER_KINDS: tuple[DocumentKind, ...] = (
    DocumentKind.BANK_STATEMENT,
    DocumentKind.REFERENCE_PAYMENT,
    DocumentKind.LEDGER_ENTRY_IMPORT,
    DocumentKind.ATTACHMENT,
)
_CHANNELS = tuple(InvoiceChannel)
_CHANNEL_WEIGHTS = (50, 10, 25, 10, 5)  # operator, bank, email, paper, typed_in
FEE_CHANNELS = frozenset({InvoiceChannel.OPERATOR, InvoiceChannel.BANK})

#: Shares of the distinct events; vouchers created take the rest.
VOID_SHARE = 0.04
PAY_SHARE = 0.07
EINVOICE_SHARE = 0.07
NON_VOUCHER_KIND_SHARE = 0.08
DUPLICATE_SHARE = 0.01
PERSONS_PER_ENVIRONMENT = 25


@dataclass(frozen=True)
class Record:
    """One Kafka record, serialised once."""

    topic: str
    key: bytes
    value: bytes


#: A row of metering.vouchers in its final state, in column order (for COPY and INSERT).
VoucherRow = tuple[str, str, str | None, datetime | None, str | None, datetime | None, str | None]
VOUCHER_COLUMNS = (
    "environment_id",
    "voucher_id",
    "document_kind",
    "created_at",
    "month",
    "voided_at",
    "void_month",
)


@dataclass(frozen=True)
class Expected:
    """What metering must hold after ingesting the workload, computed from the generated facts."""

    distinct_event_ids: int
    vouchers_by_month: dict[str, int]
    """Counted vouchers (B-10 kinds, not voided in their creation month) per Helsinki creation month."""
    vouchers_by_environment: dict[str, int]
    """Counted vouchers of `MONTH` per environment (environments with none left out)."""
    payees: int
    """Distinct (environment, person) paid in `MONTH`."""
    einvoices_sent: int
    """Sales e-invoices sent in `MONTH` on a fee channel (operator, bank)."""
    environments_with_usage: int
    """Environments with any billable figure in `MONTH`: what a month close finalizes."""


@dataclass
class Workload:
    records: list[Record]
    expected: Expected
    voucher_rows: list[VoucherRow]
    messages_by_type: dict[str, int]
    duplicates: int
    environments: int


def helsinki_month(at: datetime) -> str:
    local = at.astimezone(HELSINKI)
    return f"{local.year:04d}-{local.month:02d}"


def generate(events: int, environments: int, *, seed: int) -> Workload:
    """Build `events` records (about 1 % exact duplicates) over `environments` environments."""
    if events < 100 or environments < 1:
        raise ValueError("need at least 100 events and one environment")
    rng = random.Random(seed)
    env_ids = [f"env-{i:06d}" for i in range(environments)]
    # Skewed like real customers: a few big environments, a long tail of small ones.
    cumulative = list(accumulate(1.0 / (rank + 1) ** 0.7 for rank in range(environments)))
    total_weight = cumulative[-1]

    def pick_env() -> str:
        return env_ids[min(bisect_left(cumulative, rng.random() * total_weight), environments - 1)]

    start = MONTH_START.astimezone(UTC)
    span_ms = int((MONTH_END - MONTH_START).total_seconds() * 1000)

    def in_month() -> datetime:
        return start + timedelta(milliseconds=rng.randrange(span_ms))

    def event_id() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    duplicates = round(events * DUPLICATE_SHARE)
    distinct = events - duplicates
    n_void = round(distinct * VOID_SHARE)
    n_pay = round(distinct * PAY_SHARE)
    n_einvoice = round(distinct * EINVOICE_SHARE)
    n_create = distinct - n_void - n_pay - n_einvoice

    # (time, message) of every distinct event; facts kept as tuples for the expectation.
    timeline: list[tuple[datetime, Message]] = []
    creations: list[tuple[str, str, DocumentKind, datetime]] = []
    for i in range(n_create):
        if rng.random() < NON_VOUCHER_KIND_SHARE:
            kind = rng.choice(NON_VOUCHER_KINDS)
        else:
            kind = rng.choices(B10_KINDS, _B10_WEIGHTS)[0]
        creations.append((pick_env(), f"V{i:09d}", kind, in_month()))
    for env, voucher_id, kind, at in creations:
        timeline.append(
            (
                at,
                VoucherCreatedV1(
                    event_id=event_id(),
                    occurred_at=at,
                    producer=PRODUCER,
                    environment_id=env,
                    voucher_id=voucher_id,
                    document_kind=kind,
                    created_at=at,
                ),
            )
        )

    voids: list[tuple[str, str, datetime]] = []
    for index in rng.sample(range(n_create), n_void):
        env, voucher_id, _, created = creations[index]
        # Within 20 days: most voids land in the creation month, late-month ones in the next.
        at = created + timedelta(milliseconds=rng.randrange(1, 20 * 86_400_000))
        voids.append((env, voucher_id, at))
        timeline.append(
            (
                at,
                VoucherVoidedV1(
                    event_id=event_id(),
                    occurred_at=at,
                    producer=PRODUCER,
                    environment_id=env,
                    voucher_id=voucher_id,
                    voided_at=at,
                ),
            )
        )

    # Half of the e-invoices announce a sales invoice also created as a voucher (one voucher, B-08).
    sales = [c for c in creations if c[2] is DocumentKind.SALES_INVOICE]
    reused = rng.sample(sales, min(len(sales), n_einvoice // 2))
    einvoices: list[tuple[str, str, InvoiceChannel, datetime]] = []
    for env, voucher_id, _, created in reused:
        at = created + timedelta(milliseconds=rng.randrange(0, 3 * 86_400_000))
        # Kept in the creation month: metering keeps the first creation to *arrive* across batches,
        # and the two topics arrive in no fixed order, so a month-crossing pair would be a coin toss.
        if helsinki_month(at) != helsinki_month(created):
            at = created
        einvoices.append((env, voucher_id, rng.choices(_CHANNELS, _CHANNEL_WEIGHTS)[0], at))
    for j in range(n_einvoice - len(reused)):
        einvoices.append((pick_env(), f"E{j:09d}", rng.choices(_CHANNELS, _CHANNEL_WEIGHTS)[0], in_month()))
    for env, voucher_id, channel, at in einvoices:
        timeline.append(
            (
                at,
                EInvoiceSentV1(
                    event_id=event_id(),
                    occurred_at=at,
                    producer=PRODUCER,
                    environment_id=env,
                    voucher_id=voucher_id,
                    channel=channel,
                    sent_at=at,
                ),
            )
        )

    pays: list[tuple[str, str, datetime]] = []
    for k in range(n_pay):
        env, person, at = pick_env(), f"P{rng.randrange(PERSONS_PER_ENVIRONMENT):03d}", in_month()
        pays.append((env, person, at))
        timeline.append(
            (
                at,
                PayCalculatedV1(
                    event_id=event_id(),
                    occurred_at=at,
                    producer=PRODUCER,
                    environment_id=env,
                    payslip_id=f"S{k:09d}",
                    person_id=person,
                    calculated_at=at,
                ),
            )
        )

    # Serialise once; exact duplicates (same bytes, same event id) follow their original closely.
    stamped: list[tuple[datetime, int, Record]] = []
    messages_by_type: Counter[str] = Counter()
    for seq, (at, message) in enumerate(timeline):
        contract = type(message)
        messages_by_type[contract.__name__] += 1
        stamped.append((at, seq, Record(topic_for(contract), message.kafka_key(), wire_json(message))))
    timeline.clear()
    for seq, index in enumerate(rng.sample(range(len(stamped)), duplicates), start=len(stamped)):
        at, _, record = stamped[index]
        stamped.append((at + timedelta(milliseconds=rng.randrange(1, 600_000)), seq, record))
    stamped.sort(key=lambda s: (s[0], s[1]))
    records = [record for _, _, record in stamped]

    expected, voucher_rows = _expectation(distinct, creations, voids, einvoices, pays)
    return Workload(
        records=records,
        expected=expected,
        voucher_rows=voucher_rows,
        messages_by_type=dict(sorted(messages_by_type.items())),
        duplicates=duplicates,
        environments=environments,
    )


def _expectation(
    distinct: int,
    creations: list[tuple[str, str, DocumentKind, datetime]],
    voids: list[tuple[str, str, datetime]],
    einvoices: list[tuple[str, str, InvoiceChannel, datetime]],
    pays: list[tuple[str, str, datetime]],
) -> tuple[Expected, list[VoucherRow]]:
    # One voucher per (environment, voucher id); its earliest creation decides kind and month (B-08, B-09).
    created: dict[tuple[str, str], tuple[datetime, DocumentKind]] = {}
    for env, voucher_id, kind, at in [
        *creations,
        *((env, vid, DocumentKind.SALES_INVOICE, at) for env, vid, _, at in einvoices),
    ]:
        key = (env, voucher_id)
        if key not in created or at < created[key][0]:
            created[key] = (at, kind)
    voided: dict[tuple[str, str], datetime] = {}
    for env, voucher_id, at in voids:
        key = (env, voucher_id)
        if key not in voided or at < voided[key]:
            voided[key] = at

    vouchers_by_month: Counter[str] = Counter()
    vouchers_by_env: Counter[str] = Counter()
    b10 = set(B10_KINDS)
    for key, (at, kind) in created.items():
        month = helsinki_month(at)
        void_at = voided.get(key)
        # B-11: a voucher voided in its creation month does not count.
        if kind in b10 and (void_at is None or helsinki_month(void_at) != month):
            vouchers_by_month[month] += 1
            if month == MONTH:
                vouchers_by_env[key[0]] += 1

    payees = {(env, person) for env, person, at in pays if helsinki_month(at) == MONTH}
    sent = {
        (env, vid)
        for env, vid, channel, at in einvoices
        if channel in FEE_CHANNELS and helsinki_month(at) == MONTH
    }
    with_usage = set(vouchers_by_env) | {env for env, _ in payees} | {env for env, _ in sent}

    rows: list[VoucherRow] = []
    for key in sorted(created.keys() | voided.keys()):
        creation = created.get(key)
        void_at = voided.get(key)
        rows.append(
            (
                key[0],
                key[1],
                creation[1].value if creation else None,
                creation[0] if creation else None,
                helsinki_month(creation[0]) if creation else None,
                void_at,
                helsinki_month(void_at) if void_at else None,
            )
        )
    expected = Expected(
        distinct_event_ids=distinct,
        vouchers_by_month=dict(sorted(vouchers_by_month.items())),
        vouchers_by_environment=dict(sorted(vouchers_by_env.items())),
        payees=len(payees),
        einvoices_sent=len(sent),
        environments_with_usage=len(with_usage),
    )
    return expected, rows
