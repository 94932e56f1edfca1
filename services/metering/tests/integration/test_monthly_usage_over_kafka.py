"""Every kind of usage event over the real broker becomes exact monthly usage; late events adjust closed months.

Months closed here (2025-01, 2025-03, 2025-05…07) are used by no other test of the session database.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from billing_contracts.base import Message, wire_json
from billing_contracts.metering import MonthClosedV1, UsageAdjustedV1, UsageFinalizedV1
from billing_contracts.registry import dead_letter_topic, topic_for
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
from devstack.testing import read_topic, wait_until
from metering.domain import HELSINKI

from ..conftest import Metering

pytestmark = pytest.mark.integration

#: Markers go into February 2026, a month no test here looks at.
MARK = datetime(2026, 2, 10, 12, 0, tzinfo=HELSINKI)

ZERO: dict[str, Any] = {
    "vouchers": 0,
    "payees": 0,
    "einvoices_sent": 0,
    "einvoices_received": 0,
    "billable_users": 0,
    "signatures": 0,
    "billable_hours": {},
}


def env() -> str:
    return f"env-{uuid.uuid4().hex[:10]}"


def envelope(at: datetime) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": "test"}


def created(environment_id: str, voucher_id: str, at: datetime) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        **envelope(at),
        environment_id=environment_id,
        voucher_id=voucher_id,
        document_kind=DocumentKind.MEMO_VOUCHER,
        created_at=at,
    )


def voided(environment_id: str, voucher_id: str, at: datetime) -> VoucherVoidedV1:
    return VoucherVoidedV1(**envelope(at), environment_id=environment_id, voucher_id=voucher_id, voided_at=at)


def roles(environment_id: str, user: str, at: datetime, *granted: UserRole) -> UserRolesChangedV1:
    return UserRolesChangedV1(
        **envelope(at), environment_id=environment_id, user_id=user, roles=list(granted), changed_at=at
    )


def signed(environment_id: str, signature: str, signers: int, at: datetime) -> SignatureCompletedV1:
    return SignatureCompletedV1(
        **envelope(at),
        environment_id=environment_id,
        signature_id=signature,
        signer_count=signers,
        completed_at=at,
    )


def hours(
    environment_id: str,
    entry: str,
    product: str,
    amount: str,
    work_date: date,
    *,
    billable: bool,
    recorded_at: datetime,
) -> HourEntryRecordedV1:
    return HourEntryRecordedV1(
        **envelope(recorded_at),
        environment_id=environment_id,
        # Entry ids are made unique per environment: this database is shared by the whole session.
        entry_id=f"{environment_id}-{entry}",
        employee_id="emp-1",
        service_product_code=product,
        work_date=work_date,
        hours=Decimal(amount),
        billable=billable,
        recorded_at=recorded_at,
    )


def received(environment_id: str, voucher: str, channel: InvoiceChannel, at: datetime) -> EInvoiceReceivedV1:
    return EInvoiceReceivedV1(
        **envelope(at), environment_id=environment_id, voucher_id=voucher, channel=channel, received_at=at
    )


def sent(environment_id: str, voucher: str, channel: InvoiceChannel, at: datetime) -> EInvoiceSentV1:
    return EInvoiceSentV1(
        **envelope(at), environment_id=environment_id, voucher_id=voucher, channel=channel, sent_at=at
    )


def pay(environment_id: str, person: str, at: datetime) -> PayCalculatedV1:
    return PayCalculatedV1(
        **envelope(at),
        environment_id=environment_id,
        payslip_id=f"ps-{uuid.uuid4().hex[:6]}",
        person_id=person,
        calculated_at=at,
    )


async def settle(metering: Metering, environment_id: str, *contracts: type[Message]) -> None:
    """Publish a February marker on each contract's topic under the same key, and wait for all of them.

    Kafka keeps the order of one key within one topic, so when a topic's marker is applied, every
    earlier event of this environment on that topic is applied too.
    """
    e = environment_id
    markers: dict[type[Message], Message] = {
        VoucherCreatedV1: created(e, "marker", MARK),
        PayCalculatedV1: pay(e, "marker", MARK),
        EInvoiceSentV1: sent(e, "marker-sent", InvoiceChannel.OPERATOR, MARK),
        EInvoiceReceivedV1: received(e, "marker-received", InvoiceChannel.OPERATOR, MARK),
        SignatureCompletedV1: signed(e, "marker", 1, MARK),
        HourEntryRecordedV1: hours(e, "marker", "MARKER", "1", MARK.date(), billable=True, recorded_at=MARK),
        # A free role: it carries into later months without changing any figure (B-16).
        UserRolesChangedV1: roles(e, "marker", MARK, UserRole.STAFF_ENTRY),
    }
    await metering.publisher.publish(*(markers[c] for c in contracts))
    expected = {
        "vouchers": len({VoucherCreatedV1, EInvoiceSentV1, EInvoiceReceivedV1} & set(contracts)),
        "payees": int(PayCalculatedV1 in contracts),
        "einvoices_sent": int(EInvoiceSentV1 in contracts),
        "einvoices_received": int(EInvoiceReceivedV1 in contracts),
        "signatures": int(SignatureCompletedV1 in contracts),
        "billable_hours": {"MARKER": "1"} if HourEntryRecordedV1 in contracts else {},
    }

    async def all_applied() -> bool:
        usage: dict[str, Any] = (await metering.usage(e, "2026-02"))["usage"]  # type: ignore[assignment]
        if {k: usage[k] for k in expected} != expected:
            return False
        if UserRolesChangedV1 in contracts:
            response = await metering.http.get(f"/environments/{e}/usage/2026-02/items/users")
            return "marker" in [u["user_id"] for u in response.json()["items"]]
        return True

    await wait_until(all_applied, what=f"markers of {[c.__name__ for c in contracts]} applied")


@contextlib.contextmanager
def clock_at(metering: Metering, at: datetime) -> Iterator[None]:
    """Move the service's shared clock for a moment, and always put it back."""
    before = metering.clock.now()
    metering.clock.set(at)
    try:
        yield
    finally:
        metering.clock.set(before)


async def close(metering: Metering, month: str, at: datetime) -> httpx.Response:
    with clock_at(metering, at):
        return await metering.http.post(f"/months/{month}/close")


def about(environment_id: str, month: str) -> Any:
    def select(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in messages if m["environment_id"] == environment_id and m["month"] == month]

    return select


# --- B-16: Tallennus users at month end -----------------------------------------------------------


async def test_b16_tallennus_users_are_billed_by_their_roles_at_the_end_of_the_month(
    metering: Metering,
) -> None:
    a = env()
    aug_3 = datetime(2026, 8, 3, 9, 0, tzinfo=HELSINKI)
    last_second = datetime(2026, 8, 31, 23, 59, 59, tzinfo=HELSINKI)
    first_second = datetime(2026, 9, 1, 0, 0, 0, tzinfo=HELSINKI)
    await metering.publisher.publish(
        # Paid, then reduced to a free role in the last second of August: not billed for August.
        roles(a, "reduced-in-time", aug_3, UserRole.MAIN_USER),
        roles(a, "reduced-in-time", last_second, UserRole.MANAGEMENT_AUDITOR),
        # Reduced in the first second of September: billed for August, not for September.
        roles(a, "reduced-late", aug_3, UserRole.CUSTOM),
        roles(a, "reduced-late", first_second, UserRole.STAFF_ENTRY),
        # Removed (no roles) before month end: not billed.
        roles(a, "removed", aug_3, UserRole.ACCOUNTANT),
        roles(a, "removed", datetime(2026, 8, 20, tzinfo=HELSINKI)),
        # A paid role next to a free one is billed; free roles alone are not.
        roles(a, "paid-and-free", aug_3, UserRole.ACCOUNTANT, UserRole.STAFF_ENTRY),
        roles(a, "free-only", aug_3, UserRole.MANAGEMENT_AUDITOR, UserRole.STAFF_ENTRY),
        # Delivered newest first: the latest change before month end decides, not the last delivered.
        roles(a, "out-of-order", datetime(2026, 8, 25, tzinfo=HELSINKI), UserRole.MAIN_USER),
        roles(a, "out-of-order", datetime(2026, 8, 10, tzinfo=HELSINKI), UserRole.STAFF_ENTRY),
    )
    await settle(metering, a, UserRolesChangedV1)

    july = await metering.usage(a, "2026-07")
    august = await metering.usage(a, "2026-08")
    september = await metering.usage(a, "2026-09")
    assert july["usage"] == ZERO
    assert august["usage"] == ZERO | {"billable_users": 3}  # reduced-late, paid-and-free, out-of-order
    assert september["usage"] == ZERO | {"billable_users": 2}  # paid-and-free, out-of-order
    assert august["status"] == "open"
    assert august["adjustments"] == 0


# --- signatures, hours, e-invoices ----------------------------------------------------------------


async def test_signatures_count_every_signer_in_the_helsinki_month_of_completion(metering: Metering) -> None:
    a = env()
    aug_5 = datetime(2026, 8, 5, 14, 0, tzinfo=HELSINKI)
    twice = signed(a, "s3", 2, aug_5)
    await metering.publisher.publish(
        signed(a, "s1", 3, aug_5),
        signed(a, "s2", 1, aug_5),
        twice,
        twice,  # delivered twice
        twice.model_copy(update={"event_id": uuid.uuid4()}),  # re-emitted under a new event id
        signed(a, "s4", 4, datetime(2026, 8, 31, 23, 59, 59, tzinfo=HELSINKI)),
        signed(a, "s5", 5, datetime(2026, 8, 31, 20, 59, 59, tzinfo=UTC)),  # 23:59:59 EEST: August
        signed(a, "s6", 7, datetime(2026, 8, 31, 21, 0, 0, tzinfo=UTC)),  # 00:00 EEST: September
    )
    await settle(metering, a, SignatureCompletedV1)

    assert (await metering.usage(a, "2026-08"))["usage"] == ZERO | {"signatures": 15}  # 3+1+2+4+5
    assert (await metering.usage(a, "2026-09"))["usage"] == ZERO | {"signatures": 7}


async def test_i07_billable_hours_are_summed_per_service_product_and_a_re_recorded_entry_replaces_the_old(
    metering: Metering,
) -> None:
    a = env()
    aug_3, aug_10 = date(2026, 8, 3), date(2026, 8, 10)
    first = datetime(2026, 8, 11, 9, 0, tzinfo=HELSINKI)
    later = datetime(2026, 8, 12, 9, 0, tzinfo=HELSINKI)
    await metering.publisher.publish(
        hours(a, "h1", "CONSULT", "7.5", aug_3, billable=True, recorded_at=first),
        hours(a, "h2", "CONSULT", "2.25", date(2026, 8, 31), billable=True, recorded_at=first),
        hours(a, "h3", "TRAINING", "3", aug_10, billable=True, recorded_at=first),
        # Not billable: never an other charge (I-07).
        hours(a, "h4", "CONSULT", "5", aug_10, billable=False, recorded_at=first),
        # Re-recorded with fewer hours: 6 replaces 8.
        hours(a, "h5", "CONSULT", "8", aug_10, billable=True, recorded_at=first),
        hours(a, "h5", "CONSULT", "6", aug_10, billable=True, recorded_at=later),
        # Re-recorded as not billable: gone from the billable hours.
        hours(a, "h6", "TRAINING", "4", aug_10, billable=True, recorded_at=first),
        hours(a, "h6", "TRAINING", "4", aug_10, billable=False, recorded_at=later),
        # The newer recording arrives first: the older one that follows changes nothing.
        hours(a, "h7", "SUPPORT", "1.5", aug_10, billable=True, recorded_at=later),
        hours(a, "h7", "SUPPORT", "9", aug_10, billable=True, recorded_at=first),
        # The work date, not the recording time, picks the month.
        hours(a, "h8", "CONSULT", "1", date(2026, 9, 1), billable=True, recorded_at=first),
        # Re-recorded onto a September date: it moves out of August.
        hours(a, "h9", "TRAINING", "2", aug_10, billable=True, recorded_at=first),
        hours(a, "h9", "TRAINING", "2", date(2026, 9, 2), billable=True, recorded_at=later),
    )
    await settle(metering, a, HourEntryRecordedV1)

    august = await metering.usage(a, "2026-08")
    september = await metering.usage(a, "2026-09")
    assert august["usage"] == ZERO | {
        "billable_hours": {"CONSULT": "15.75", "SUPPORT": "1.5", "TRAINING": "3"}
    }
    assert september["usage"] == ZERO | {"billable_hours": {"CONSULT": "1", "TRAINING": "2"}}


async def test_b13_received_e_invoices_count_as_vouchers_and_only_operator_and_bank_carry_a_fee(
    metering: Metering,
) -> None:
    a = env()
    at = datetime(2026, 8, 14, 10, 0, tzinfo=HELSINKI)
    by_operator = received(a, "r1", InvoiceChannel.OPERATOR, at)
    await metering.publisher.publish(
        by_operator,
        by_operator.model_copy(update={"event_id": uuid.uuid4()}),  # re-emitted: one message, one voucher
        received(a, "r2", InvoiceChannel.BANK, at),
        received(a, "r3", InvoiceChannel.EMAIL, at),
        received(a, "r4", InvoiceChannel.PAPER, at),
        received(a, "r5", InvoiceChannel.TYPED_IN, at),
        # The last second of August in Helsinki (20:59:59 UTC) still counts in August.
        received(a, "r6", InvoiceChannel.BANK, datetime(2026, 8, 31, 23, 59, 59, tzinfo=HELSINKI)),
        received(a, "r7", InvoiceChannel.OPERATOR, datetime(2026, 9, 1, 0, 0, 0, tzinfo=HELSINKI)),
    )
    await metering.publisher.publish(
        sent(a, "s1", InvoiceChannel.TYPED_IN, at),
        sent(a, "s2", InvoiceChannel.OPERATOR, at),
    )
    await settle(metering, a, EInvoiceReceivedV1, EInvoiceSentV1)

    assert (await metering.usage(a, "2026-08"))["usage"] == ZERO | {
        "vouchers": 8,  # r1…r6, s1, s2
        "einvoices_received": 3,  # r1, r2, r6
        "einvoices_sent": 1,  # s2
    }
    assert (await metering.usage(a, "2026-09"))["usage"] == ZERO | {"vouchers": 1, "einvoices_received": 1}


# --- closing a month and late events --------------------------------------------------------------


async def test_a_late_event_after_the_month_closed_is_published_as_a_numbered_adjustment(
    metering: Metering,
) -> None:
    """B-04, B-09, B-11: a closed month is never silently changed; each change is an adjustment."""
    a = env()
    march_10 = datetime(2025, 3, 10, 10, 0, tzinfo=HELSINKI)
    await metering.publisher.publish(created(a, "v1", march_10), created(a, "v2", march_10))
    await metering.publisher.publish(pay(a, "p1", march_10))
    await settle(metering, a, VoucherCreatedV1, PayCalculatedV1)

    # March 2025 ends at 2025-04-01 00:00 EEST; with the 2 h grace it may close at 02:00.
    too_early = await close(metering, "2025-03", datetime(2025, 4, 1, 1, 59, 59, tzinfo=HELSINKI))
    assert too_early.status_code == 409
    assert too_early.json()["detail"] == "month 2025-03 has not ended plus its grace period yet"
    closed = await close(metering, "2025-03", datetime(2025, 4, 1, 2, 0, 0, tzinfo=HELSINKI))
    assert closed.status_code == 200
    assert closed.json() == {"month": "2025-03", "closed_now": True, "environment_count": 1}

    finalized = about(a, "2025-03")(
        await read_topic(
            metering.kafka, topic_for(UsageFinalizedV1), until=lambda ms: bool(about(a, "2025-03")(ms))
        )
    )
    assert [m["usage"] for m in finalized] == [ZERO | {"vouchers": 2, "payees": 1}]
    month_closed = await read_topic(
        metering.kafka,
        topic_for(MonthClosedV1),
        until=lambda ms: any(m["month"] == "2025-03" for m in ms),
    )
    assert [m["environment_count"] for m in month_closed if m["month"] == "2025-03"] == [1]

    # The last second of March in Helsinki, arriving after the close.
    await metering.publisher.publish(created(a, "v3", datetime(2025, 3, 31, 23, 59, 59, tzinfo=HELSINKI)))
    adjusted = about(a, "2025-03")(
        await read_topic(
            metering.kafka, topic_for(UsageAdjustedV1), until=lambda ms: bool(about(a, "2025-03")(ms))
        )
    )
    assert len(adjusted) == 1
    first = adjusted[0]
    assert first["adjustment_no"] == 1
    assert first["producer"] == "metering"
    assert first["usage"] == ZERO | {"vouchers": 3, "payees": 1}
    assert first["previous"] == ZERO | {"vouchers": 2, "payees": 1}
    assert datetime.fromisoformat(first["occurred_at"]) == metering.clock.now()
    view = await metering.usage(a, "2025-03")
    assert view == {
        "environment_id": a,
        "month": "2025-03",
        "status": "closed",
        "usage": ZERO | {"vouchers": 3, "payees": 1},
        "adjustments": 1,
    }

    # B-11: a void in a later month changes nothing (no adjustment); one in March removes the voucher.
    await metering.publisher.publish(
        voided(a, "v1", datetime(2025, 4, 2, 9, 0, tzinfo=HELSINKI)),
        voided(a, "v2", datetime(2025, 3, 20, 9, 0, tzinfo=HELSINKI)),
    )
    adjusted = about(a, "2025-03")(
        await read_topic(
            metering.kafka, topic_for(UsageAdjustedV1), until=lambda ms: len(about(a, "2025-03")(ms)) >= 2
        )
    )
    assert [(m["adjustment_no"], m["usage"]["vouchers"], m["previous"]["vouchers"]) for m in adjusted] == [
        (1, 3, 2),
        (2, 2, 3),
    ]
    view = await metering.usage(a, "2025-03")
    assert (view["status"], view["adjustments"], view["usage"]) == (
        "closed",
        2,
        ZERO | {"vouchers": 2, "payees": 1},
    )


async def test_closing_a_month_twice_answers_closed_now_false_and_an_unfinished_month_answers_409(
    metering: Metering,
) -> None:
    a = env()
    await metering.publisher.publish(created(a, "v1", datetime(2025, 1, 15, 12, 0, tzinfo=HELSINKI)))
    await settle(metering, a, VoucherCreatedV1)

    after_grace = datetime(2025, 2, 1, 2, 0, 0, tzinfo=HELSINKI)
    first = await close(metering, "2025-01", after_grace)
    second = await close(metering, "2025-01", after_grace)
    assert (first.status_code, first.json()) == (
        200,
        {"month": "2025-01", "closed_now": True, "environment_count": 1},
    )
    assert (second.status_code, second.json()) == (
        200,
        {"month": "2025-01", "closed_now": False, "environment_count": 1},
    )
    view = await metering.usage(a, "2025-01")
    assert (view["status"], view["adjustments"], view["usage"]) == ("closed", 0, ZERO | {"vouchers": 1})

    # The service clock stands at 2026-11-20: November is running, December has not begun.
    for month in ("2026-11", "2026-12"):
        response = await metering.http.post(f"/months/{month}/close")
        assert response.status_code == 409
        assert response.json()["detail"] == f"month {month} has not ended plus its grace period yet"
    assert (await metering.usage(a, "2026-11"))["status"] == "open"
    assert (await metering.http.post("/months/2026-13/close")).status_code == 422


async def test_b16_a_late_role_change_adjusts_every_closed_month_whose_end_it_precedes(
    metering: Metering,
) -> None:
    a = env()
    after_june = datetime(2025, 7, 1, 2, 0, 0, tzinfo=HELSINKI)
    for month in ("2025-05", "2025-06"):
        assert (await close(metering, month, after_june)).status_code == 200

    await metering.publisher.publish(
        roles(a, "u1", datetime(2025, 5, 10, tzinfo=HELSINKI), UserRole.ACCOUNTANT)
    )

    async def may_adjusted() -> bool:
        return (await metering.usage(a, "2025-05"))["adjustments"] == 1

    await wait_until(may_adjusted, what="May 2025 adjusted")
    may = await metering.usage(a, "2025-05")
    june = await metering.usage(a, "2025-06")
    assert may["usage"] == ZERO | {"billable_users": 1}
    assert june["usage"] == ZERO | {"billable_users": 1}
    # June was published with no users; the user present at its end must reach invoicing too.
    assert june["adjustments"] == 1


async def test_i07_an_hour_entry_moved_out_of_a_closed_month_adjusts_that_month(metering: Metering) -> None:
    a = env()
    await metering.publisher.publish(
        hours(
            a,
            "h1",
            "CONSULT",
            "5",
            date(2025, 7, 31),
            billable=True,
            recorded_at=datetime(2025, 7, 31, 16, 0, tzinfo=HELSINKI),
        )
    )
    await settle(metering, a, HourEntryRecordedV1)
    assert (await close(metering, "2025-07", datetime(2025, 8, 1, 2, 0, tzinfo=HELSINKI))).status_code == 200

    # The date is corrected to 1 August after July was closed.
    await metering.publisher.publish(
        hours(
            a,
            "h1",
            "CONSULT",
            "5",
            date(2025, 8, 1),
            billable=True,
            recorded_at=datetime(2025, 8, 4, 9, 0, tzinfo=HELSINKI),
        )
    )

    async def moved() -> bool:
        usage: dict[str, Any] = (await metering.usage(a, "2025-08"))["usage"]  # type: ignore[assignment]
        return bool(usage["billable_hours"] == {"CONSULT": "5"})

    await wait_until(moved, what="hour entry moved to August")
    july = await metering.usage(a, "2025-07")
    assert july["usage"] == ZERO
    assert july["adjustments"] == 1


# --- poison messages ------------------------------------------------------------------------------


async def test_every_kind_of_bad_input_is_dead_lettered_with_its_reason_while_valid_neighbours_count(
    metering: Metering,
) -> None:
    a = env()
    key = a.encode()
    july_5 = datetime(2026, 7, 5, 10, 0, tzinfo=HELSINKI)
    vouchers = topic_for(VoucherCreatedV1)
    good = [created(a, f"good{n}", july_5) for n in range(5)]

    def voucher_json(**changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(wire_json(created(a, "bad", july_5)))
        for name, value in changes.items():
            if value is None:
                del body[name]
            else:
                body[name] = value
        return body

    unknown_kind = voucher_json(document_kind="spaceship")
    no_event_id = voucher_json(event_id=None)
    no_voucher_id = voucher_json(voucher_id=None)
    naive = voucher_json(created_at="2026-07-05T10:00:00")
    wrong_contract = json.loads(wire_json(pay(a, "p1", july_5)))
    future = created(a, "future", datetime(2026, 11, 21, 12, 0, 1, tzinfo=HELSINKI))  # clock + 1 day + 1 s
    too_many_hours = json.loads(
        wire_json(hours(a, "h1", "CONSULT", "8", date(2026, 7, 5), billable=True, recorded_at=july_5))
    ) | {"hours": "25"}
    good_hours = hours(a, "h2", "CONSULT", "8", date(2026, 7, 5), billable=True, recorded_at=july_5)

    bad: list[tuple[str, bytes, str, str, str | None]] = [
        (
            vouchers,
            b"{not json",
            "malformed",
            "<root>: Invalid JSON: key must be a string at line 1 column 2",
            None,
        ),
        (vouchers, b"[1, 2]", "schema_violation", "<root>: Input should be an object", None),
        (
            vouchers,
            json.dumps(unknown_kind).encode(),
            "schema_violation",
            "document_kind: Input should be 'sales_invoice', 'purchase_invoice', 'travel_invoice', "
            "'expense_invoice', 'payslip', 'sales_order', 'quote_order', 'purchase_order', 'memo_voucher', "
            "'vat_calculation', 'authority_report', 'mass_letter', 'payment_reminder', 'document', "
            "'direct_bank_transfer', 'bank_statement', 'reference_payment', 'ledger_entry_import' or 'attachment'",
            unknown_kind["event_id"],
        ),
        (vouchers, json.dumps(no_event_id).encode(), "schema_violation", "event_id: Field required", None),
        (
            vouchers,
            json.dumps(no_voucher_id).encode(),
            "schema_violation",
            "voucher_id: Field required",
            no_voucher_id["event_id"],
        ),
        (
            vouchers,
            json.dumps(naive).encode(),
            "schema_violation",
            "created_at: Input should have timezone info",
            naive["event_id"],
        ),
        (
            vouchers,
            json.dumps(wrong_contract).encode(),
            "schema_violation",
            "voucher_id: Field required; document_kind: Field required; created_at: Field required",
            wrong_contract["event_id"],
        ),
        (
            vouchers,
            wire_json(future),
            "rejected",
            "timestamp 2026-11-21T12:00:01+02:00 is implausibly far in the future",
            str(future.event_id),
        ),
        (
            topic_for(HourEntryRecordedV1),
            json.dumps(too_many_hours).encode(),
            "schema_violation",
            "hours: Input should be less than or equal to 24",
            too_many_hours["event_id"],
        ),
    ]
    # Each bad message sits between valid ones on the same partition.
    await metering.publisher.publish(good[0])
    for n, (topic, value, *_) in enumerate(bad):
        await metering.publisher.publish_raw(topic, value, key=key)
        if topic == vouchers:
            await metering.publisher.publish(good[1 + n % 4])
    await metering.publisher.publish(good_hours)
    await settle(metering, a, VoucherCreatedV1, HourEntryRecordedV1)

    assert (await metering.usage(a, "2026-07"))["usage"] == ZERO | {
        "vouchers": 5,
        "billable_hours": {"CONSULT": "8"},
    }
    assert (await metering.usage(a, "2026-11"))["usage"] == ZERO

    mine = base64.b64encode(key).decode()

    def letters_of_mine(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [d for d in letters if d["original_key_b64"] == mine]

    letters = letters_of_mine(
        await read_topic(
            metering.kafka,
            dead_letter_topic("metering"),
            until=lambda ls: len(letters_of_mine(ls)) >= len(bad),
        )
    )
    got = sorted(
        (
            d["original_topic"],
            base64.b64decode(d["original_value_b64"]),
            d["failure"],
            d["reason"],
            d["original_event_id"],
        )
        for d in letters
    )
    assert got == sorted(bad)
    assert {d["consumer_group"] for d in letters} == {"metering"}
