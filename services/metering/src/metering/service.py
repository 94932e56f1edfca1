"""Metering use cases: record usage, close a month, publish late adjustments, read usage."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from billing_contracts.base import Message
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFigures, UsageFinalizedV1
from billing_contracts.usage import (
    EInvoiceReceivedV1,
    EInvoiceSentV1,
    HourEntryRecordedV1,
    PayCalculatedV1,
    SignatureCompletedV1,
    UserRolesChangedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)
from metering.domain import MAX_FUTURE_SKEW, Usage, close_is_due, month_at
from metering.repository import SqlAlchemyUsageRepository
from metering.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.database import Session, Sessions
from service_runtime.outbox import OutgoingMessage, enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "metering"

USAGE_CONTRACTS: tuple[type[Message], ...] = (
    VoucherCreatedV1,
    VoucherVoidedV1,
    PayCalculatedV1,
    EInvoiceSentV1,
    EInvoiceReceivedV1,
    UserRolesChangedV1,
    SignatureCompletedV1,
    HourEntryRecordedV1,
)


#: The timestamp of each usage event that decides its month and is checked for plausibility.
_TIME_FIELD: dict[type[Message], str] = {
    VoucherCreatedV1: "created_at",
    VoucherVoidedV1: "voided_at",
    PayCalculatedV1: "calculated_at",
    EInvoiceSentV1: "sent_at",
    EInvoiceReceivedV1: "received_at",
    UserRolesChangedV1: "changed_at",
    SignatureCompletedV1: "completed_at",
    HourEntryRecordedV1: "recorded_at",
}


def figures(usage: Usage) -> UsageFigures:
    return UsageFigures(
        vouchers=usage.vouchers,
        payees=usage.payees,
        einvoices_sent=usage.einvoices_sent,
        einvoices_received=usage.einvoices_received,
        billable_users=usage.billable_users,
        signatures=usage.signatures,
        billable_hours={k: format(v, "f") for k, v in usage.billable_hours.items()},
    )


def usage_from_json(data: dict[str, Any]) -> Usage:
    f = UsageFigures.model_validate(data)
    return Usage(
        vouchers=f.vouchers,
        payees=f.payees,
        einvoices_sent=f.einvoices_sent,
        einvoices_received=f.einvoices_received,
        billable_users=f.billable_users,
        signatures=f.signatures,
        billable_hours={k: Decimal(v) for k, v in f.billable_hours.items()},
    )


class _Batch:
    """The rows one batch of usage events writes, each table's rows de-duplicated by key."""

    def __init__(self) -> None:
        # (environment, voucher) → (kind, created at, month): the earliest creation wins (B-09).
        self.creations: dict[tuple[str, str], tuple[str, datetime, str]] = {}
        # (environment, voucher) → (voided at, month): the earliest void wins (B-11).
        self.voids: dict[tuple[str, str], tuple[datetime, str]] = {}
        self.payees: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.roles: list[dict[str, Any]] = []
        self.signatures: list[dict[str, Any]] = []
        self.hours: dict[str, dict[str, Any]] = {}
        self.touched: set[tuple[str, str]] = set()
        # Changes that count in their month and in every later month (B-16 users at month end).
        self.carried: set[tuple[str, str]] = set()

    def create(self, env: str, voucher_id: str, kind: str, at: datetime, month: str) -> None:
        key = (env, voucher_id)
        known = self.creations.get(key)
        if known is None or at < known[1]:
            self.creations[key] = (kind, at, month)
        self.touched.add((env, month))

    def voucher_created(self, e: VoucherCreatedV1, month: str) -> None:
        self.create(e.environment_id, e.voucher_id, e.document_kind.value, e.created_at, month)

    def voucher_voided(self, e: VoucherVoidedV1, month: str) -> None:
        key = (e.environment_id, e.voucher_id)
        known = self.voids.get(key)
        if known is None or e.voided_at < known[0]:
            self.voids[key] = (e.voided_at, month)

    def einvoice_sent(self, e: EInvoiceSentV1, month: str) -> None:
        self._einvoice(e.environment_id, e.voucher_id, "sent", e.channel, e.sent_at, month)

    def einvoice_received(self, e: EInvoiceReceivedV1, month: str) -> None:
        self._einvoice(e.environment_id, e.voucher_id, "received", e.channel, e.received_at, month)

    def _einvoice(
        self, env: str, voucher_id: str, direction: str, channel: Any, at: datetime, month: str
    ) -> None:
        # B-13: every e-invoice is also a voucher (B-08), whatever its channel.
        self.create(
            env, voucher_id, "sales_invoice" if direction == "sent" else "purchase_invoice", at, month
        )
        self.messages.append(
            {
                "environment_id": env,
                "voucher_id": voucher_id,
                "direction": direction,
                "channel": channel.value,
                "at": at,
                "month": month,
            }
        )

    def pay_calculated(self, e: PayCalculatedV1, month: str) -> None:
        self.payees.append(
            {
                "environment_id": e.environment_id,
                "month": month,
                "person_id": e.person_id,
                "first_payslip_id": e.payslip_id,
                "first_calculated_at": e.calculated_at,
            }
        )
        self.touched.add((e.environment_id, month))

    def roles_changed(self, e: UserRolesChangedV1, month: str) -> None:
        self.roles.append(
            {
                "environment_id": e.environment_id,
                "user_id": e.user_id,
                "changed_at": e.changed_at,
                "roles": sorted(r.value for r in e.roles),
            }
        )
        self.carried.add((e.environment_id, month))

    def signature_completed(self, e: SignatureCompletedV1, month: str) -> None:
        self.signatures.append(
            {
                "environment_id": e.environment_id,
                "signature_id": e.signature_id,
                "signer_count": e.signer_count,
                "completed_at": e.completed_at,
                "month": month,
            }
        )
        self.touched.add((e.environment_id, month))

    def hours_recorded(self, e: HourEntryRecordedV1, _: str) -> None:
        # I-07: an hour entry belongs to the month of its work date; the newest recording wins.
        month = f"{e.work_date.year:04d}-{e.work_date.month:02d}"
        previous = self.hours.get(e.entry_id)
        if previous is None or e.recorded_at > previous["recorded_at"]:
            self.hours[e.entry_id] = {
                "entry_id": e.entry_id,
                "environment_id": e.environment_id,
                "employee_id": e.employee_id,
                "service_product_code": e.service_product_code,
                "work_date": e.work_date,
                "month": month,
                "hours": e.hours,
                "billable": e.billable,
                "recorded_at": e.recorded_at,
            }
        self.touched.add((e.environment_id, month))


_Handler = Callable[[_Batch, Any, str], None]

_HANDLERS: dict[type[Message], _Handler] = {
    VoucherCreatedV1: _Batch.voucher_created,
    VoucherVoidedV1: _Batch.voucher_voided,
    EInvoiceSentV1: _Batch.einvoice_sent,
    EInvoiceReceivedV1: _Batch.einvoice_received,
    PayCalculatedV1: _Batch.pay_calculated,
    UserRolesChangedV1: _Batch.roles_changed,
    SignatureCompletedV1: _Batch.signature_completed,
    HourEntryRecordedV1: _Batch.hours_recorded,
}


async def record_usage(session: Session, events: Sequence[Message], clock: Clock) -> list[Rejection]:
    """Record a batch of usage events (B-08…B-16) in the caller's transaction; refuse implausible ones.

    Usage that changes a closed month is published as an adjustment of that month, never dropped.
    """
    now = clock.now()
    latest_plausible = (now + MAX_FUTURE_SKEW).timestamp()
    repo = SqlAlchemyUsageRepository(session)
    rejections: list[Rejection] = []
    batch = _Batch()
    for event in events:
        kind = type(event)
        handler = _HANDLERS.get(kind)
        if handler is None:
            rejections.append(Rejection(event.event_id, f"unsupported message {kind.__name__}"))
            continue
        at: datetime = getattr(event, _TIME_FIELD[kind])
        # One epoch conversion per event serves both the plausibility check and B-09's month.
        instant = at.timestamp()
        if instant > latest_plausible:
            rejections.append(
                Rejection(event.event_id, f"timestamp {at.isoformat()} is implausibly far in the future")
            )
            continue
        handler(batch, event, month_at(instant))

    carried = batch.carried | await repo.upsert_voucher_creations(
        [
            {
                "environment_id": env,
                "voucher_id": vid,
                "document_kind": kind,
                "created_at": at,
                "month": m,
            }
            for (env, vid), (kind, at, m) in batch.creations.items()
        ]
    )
    await repo.upsert_voucher_voids(
        [
            {"environment_id": env, "voucher_id": vid, "voided_at": at, "void_month": m}
            for (env, vid), (at, m) in batch.voids.items()
        ]
    )
    await repo.insert_ignoring_duplicates("payees", batch.payees)
    await repo.insert_ignoring_duplicates("einvoice_messages", batch.messages)
    await repo.insert_ignoring_duplicates("user_role_changes", batch.roles)
    await repo.insert_ignoring_duplicates("signatures", batch.signatures)
    touched = batch.touched
    # An hour entry moved to another month leaves its old one.
    touched |= await repo.hour_entry_months(batch.hours)
    await repo.upsert_hour_entries(list(batch.hours.values()))
    touched |= await repo.voucher_months(batch.voids)
    if carried:
        closed = await repo.closed_months_since(min(m for _, m in carried))
        touched |= {(env, c) for env, m in carried for c in closed if c >= m}
    await _adjust_closed_months(session, repo, touched, clock)
    return rejections


async def _adjust_closed_months(
    session: Session, repo: SqlAlchemyUsageRepository, touched: set[tuple[str, str]], clock: Clock
) -> None:
    """Usage that changed a closed month is published as an adjustment of that month, never dropped."""
    closed = await repo.closed_months(m for _, m in touched)
    if not closed:
        return
    keys = sorted((env, m) for env, m in touched if m in closed)
    finalized = await repo.finalized(keys)
    now = clock.now()
    out: list[OutgoingMessage] = []
    saved: list[dict[str, Any]] = []
    for month in sorted({m for _, m in keys}):
        envs = [env for env, m in keys if m == month]
        current = await repo.usage(month, envs)
        for env in envs:
            previous_json, count = finalized.get((env, month), (figures(Usage()).model_dump(mode="json"), 0))
            new = current[env]
            previous = usage_from_json(previous_json)
            if new == previous:
                continue
            adjustment = UsageAdjustedV1(
                event_id=uuid.uuid4(),
                occurred_at=now,
                producer=PRODUCER,
                environment_id=env,
                month=month,
                adjustment_no=count + 1,
                usage=figures(new),
                previous=figures(previous),
            )
            out.append(outgoing(adjustment))
            saved.append(
                {
                    "environment_id": env,
                    "month": month,
                    "usage": adjustment.usage.model_dump_json(),
                    "adjustments": count + 1,
                    "updated_at": now,
                }
            )
            log.info("late_usage_adjusted", environment_id=env, month=month, adjustment_no=count + 1)
    await repo.save_finalized(saved)
    await enqueue(session, runtime_tables.outbox, out, clock)


@dataclass(frozen=True)
class CloseResult:
    month: str
    closed_now: bool
    environment_count: int


async def close_month(sessions: Sessions, clock: Clock, month: str, *, grace: timedelta) -> CloseResult:
    """Close a month: publish every environment's final usage and the month-closed marker, once.

    Idempotent and safe to run concurrently (advisory lock + unique month row); a crash before
    commit leaves nothing behind, so the next attempt starts over.
    """
    now = clock.now()
    if not close_is_due(month, now, grace):
        raise MonthNotOverError(month)
    async with sessions.begin() as session:
        repo = SqlAlchemyUsageRepository(session)
        await repo.lock_month(month)
        info = await repo.close_info(month)
        if info is not None:
            return CloseResult(month, False, info[1])
        await repo.summarize_month_indexes()
        usage = {env: figures(u) for env, u in (await repo.usage(month)).items()}
        await repo.mark_closed(month, now, len(usage))
        await repo.save_finalized(
            [
                {
                    "environment_id": env,
                    "month": month,
                    "usage": f.model_dump_json(),
                    "adjustments": 0,
                    "updated_at": now,
                }
                for env, f in usage.items()
            ]
        )
        messages = [
            outgoing(
                UsageFinalizedV1(
                    event_id=uuid.uuid4(),
                    occurred_at=now,
                    producer=PRODUCER,
                    environment_id=env,
                    month=month,
                    usage=f,
                )
            )
            for env, f in usage.items()
        ]
        messages.append(
            outgoing(
                MonthClosedV1(
                    event_id=uuid.uuid4(),
                    occurred_at=now,
                    producer=PRODUCER,
                    month=month,
                    environment_count=len(usage),
                )
            )
        )
        await enqueue(session, runtime_tables.outbox, messages, clock)
    log.info("month_closed", month=month, environments=len(usage))
    return CloseResult(month, True, len(usage))


class MonthNotOverError(Exception):
    """A month cannot close before its end plus the grace period."""

    def __init__(self, month: str) -> None:
        super().__init__(f"month {month} has not ended plus its grace period yet")
        self.month = month
