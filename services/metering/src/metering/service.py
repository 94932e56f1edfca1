"""Metering use cases: record usage, close a month, publish late adjustments, read usage."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
from metering.domain import Usage, close_is_due, is_implausible_future, month_of
from metering.repository import SqlAlchemyUsageRepository
from metering.tables import runtime_tables
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
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


def _event_time(event: Message) -> Any:
    for name in (
        "created_at",
        "voided_at",
        "calculated_at",
        "sent_at",
        "received_at",
        "changed_at",
        "completed_at",
        "recorded_at",
    ):
        if hasattr(event, name):
            return getattr(event, name)
    return event.occurred_at


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


class UsageRecorder:
    """The batch use case behind every usage topic."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        now = self._clock.now()
        repo = SqlAlchemyUsageRepository(session)
        rejections: list[Rejection] = []
        creations: dict[tuple[str, str], dict[str, Any]] = {}
        voids: dict[tuple[str, str], dict[str, Any]] = {}
        payees: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        roles: list[dict[str, Any]] = []
        signatures: list[dict[str, Any]] = []
        hours: dict[str, dict[str, Any]] = {}
        touched: set[tuple[str, str]] = set()
        # Changes that count in their month and in every later month (B-16 users at month end).
        carried: set[tuple[str, str]] = set()

        def create(env: str, voucher_id: str, kind: str, at: Any) -> None:
            key = (env, voucher_id)
            month = month_of(at)
            if key not in creations or at < creations[key]["created_at"]:
                creations[key] = {
                    "environment_id": env,
                    "voucher_id": voucher_id,
                    "document_kind": kind,
                    "created_at": at,
                    "month": month,
                }
            touched.add((env, month))

        for event in events:
            at = _event_time(event)
            if is_implausible_future(at, now):
                rejections.append(
                    Rejection(event.event_id, f"timestamp {at.isoformat()} is implausibly far in the future")
                )
                continue
            match event:
                case VoucherCreatedV1():
                    create(
                        event.environment_id, event.voucher_id, event.document_kind.value, event.created_at
                    )
                case VoucherVoidedV1():
                    key = (event.environment_id, event.voucher_id)
                    if key not in voids or event.voided_at < voids[key]["voided_at"]:
                        voids[key] = {
                            "environment_id": event.environment_id,
                            "voucher_id": event.voucher_id,
                            "voided_at": event.voided_at,
                            "void_month": month_of(event.voided_at),
                        }
                case EInvoiceSentV1() | EInvoiceReceivedV1():
                    sent = isinstance(event, EInvoiceSentV1)
                    kind = "sales_invoice" if sent else "purchase_invoice"
                    create(event.environment_id, event.voucher_id, kind, at)
                    messages.append(
                        {
                            "environment_id": event.environment_id,
                            "voucher_id": event.voucher_id,
                            "direction": "sent" if sent else "received",
                            "channel": event.channel.value,
                            "at": at,
                            "month": month_of(at),
                        }
                    )
                case PayCalculatedV1():
                    month = month_of(event.calculated_at)
                    payees.append(
                        {
                            "environment_id": event.environment_id,
                            "month": month,
                            "person_id": event.person_id,
                            "first_payslip_id": event.payslip_id,
                            "first_calculated_at": event.calculated_at,
                        }
                    )
                    touched.add((event.environment_id, month))
                case UserRolesChangedV1():
                    roles.append(
                        {
                            "environment_id": event.environment_id,
                            "user_id": event.user_id,
                            "changed_at": event.changed_at,
                            "roles": sorted(r.value for r in event.roles),
                        }
                    )
                    carried.add((event.environment_id, month_of(event.changed_at)))
                case SignatureCompletedV1():
                    month = month_of(event.completed_at)
                    signatures.append(
                        {
                            "environment_id": event.environment_id,
                            "signature_id": event.signature_id,
                            "signer_count": event.signer_count,
                            "completed_at": event.completed_at,
                            "month": month,
                        }
                    )
                    touched.add((event.environment_id, month))
                case HourEntryRecordedV1():
                    month = f"{event.work_date.year:04d}-{event.work_date.month:02d}"
                    previous = hours.get(event.entry_id)
                    if previous is None or event.recorded_at > previous["recorded_at"]:
                        hours[event.entry_id] = {
                            "entry_id": event.entry_id,
                            "environment_id": event.environment_id,
                            "employee_id": event.employee_id,
                            "service_product_code": event.service_product_code,
                            "work_date": event.work_date,
                            "month": month,
                            "hours": event.hours,
                            "billable": event.billable,
                            "recorded_at": event.recorded_at,
                        }
                    touched.add((event.environment_id, month))
                case _:
                    rejections.append(
                        Rejection(event.event_id, f"unsupported message {type(event).__name__}")
                    )

        carried |= await repo.upsert_voucher_creations(list(creations.values()))
        await repo.upsert_voucher_voids(list(voids.values()))
        await repo.insert_ignoring_duplicates("payees", payees)
        await repo.insert_ignoring_duplicates("einvoice_messages", messages)
        await repo.insert_ignoring_duplicates("user_role_changes", roles)
        await repo.insert_ignoring_duplicates("signatures", signatures)
        touched |= await repo.hour_entry_months(hours)  # an entry moved to another month leaves its old one
        await repo.upsert_hour_entries(list(hours.values()))
        touched |= await repo.voucher_months(voids)
        if carried:
            closed = await repo.closed_months_since(min(m for _, m in carried))
            touched |= {(env, c) for env, m in carried for c in closed if c >= m}
        await self._adjust_closed_months(session, repo, touched)
        return rejections

    async def _adjust_closed_months(
        self, session: AsyncSession, repo: SqlAlchemyUsageRepository, touched: set[tuple[str, str]]
    ) -> None:
        """Usage that changed a closed month is published as an adjustment of that month, never dropped."""
        closed = await repo.closed_months(m for _, m in touched)
        if not closed:
            return
        keys = sorted((env, m) for env, m in touched if m in closed)
        finalized = await repo.finalized(keys)
        now = self._clock.now()
        out: list[OutgoingMessage] = []
        saved: list[dict[str, Any]] = []
        for month in sorted({m for _, m in keys}):
            envs = [env for env, m in keys if m == month]
            current = await repo.usage(month, envs)
            for env in envs:
                previous_json, count = finalized.get(
                    (env, month), (figures(Usage()).model_dump(mode="json"), 0)
                )
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
                        "usage": figures(new).model_dump(mode="json"),
                        "adjustments": count + 1,
                        "updated_at": now,
                    }
                )
                log.info("late_usage_adjusted", environment_id=env, month=month, adjustment_no=count + 1)
        await repo.save_finalized(saved)
        await enqueue(session, runtime_tables.outbox, out, self._clock)


@dataclass(frozen=True)
class CloseResult:
    month: str
    closed_now: bool
    environment_count: int


async def close_month(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, month: str, *, grace: timedelta
) -> CloseResult:
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
        usage = await repo.usage(month)
        await repo.mark_closed(month, now, len(usage))
        await repo.save_finalized(
            [
                {
                    "environment_id": env,
                    "month": month,
                    "usage": figures(u).model_dump(mode="json"),
                    "adjustments": 0,
                    "updated_at": now,
                }
                for env, u in usage.items()
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
                    usage=figures(u),
                )
            )
            for env, u in usage.items()
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
