"""Usage events over the real broker become exact monthly usage (B-08…B-13)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from billing_contracts.registry import dead_letter_topic
from billing_contracts.usage import (
    DocumentKind,
    EInvoiceSentV1,
    InvoiceChannel,
    PayCalculatedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)
from devstack.testing import read_topic, wait_until
from metering.domain import HELSINKI

from ..conftest import Metering

pytestmark = pytest.mark.integration

OCT_5 = datetime(2026, 10, 5, 10, 0, tzinfo=HELSINKI)


def env() -> str:
    return f"env-{uuid.uuid4().hex[:8]}"


def created(
    environment_id: str,
    voucher_id: str,
    at: datetime,
    kind: DocumentKind = DocumentKind.PURCHASE_INVOICE,
    event_id: uuid.UUID | None = None,
) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=event_id or uuid.uuid4(),
        occurred_at=at,
        producer="test",
        environment_id=environment_id,
        voucher_id=voucher_id,
        document_kind=kind,
        created_at=at,
    )


def voided(environment_id: str, voucher_id: str, at: datetime) -> VoucherVoidedV1:
    return VoucherVoidedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="test",
        environment_id=environment_id,
        voucher_id=voucher_id,
        voided_at=at,
    )


def pay(environment_id: str, person: str, at: datetime) -> PayCalculatedV1:
    return PayCalculatedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="test",
        environment_id=environment_id,
        payslip_id=f"ps-{uuid.uuid4().hex[:6]}",
        person_id=person,
        calculated_at=at,
    )


async def settled_usage(
    metering: Metering, environment_id: str, month: str, marker: str
) -> dict[str, object]:
    """Publish a marker voucher in another month and wait for it: everything before it is applied."""
    await metering.publisher.publish(created(environment_id, marker, datetime(2026, 1, 15, tzinfo=HELSINKI)))

    async def marker_seen() -> bool:
        body = await metering.usage(environment_id, "2026-01")
        usage = body["usage"]
        assert isinstance(usage, dict)
        return bool(usage["vouchers"])

    await wait_until(marker_seen, what="marker voucher counted")
    return await metering.usage(environment_id, month)


async def test_vouchers_count_in_their_helsinki_creation_month_and_voids_follow_b11(
    metering: Metering,
) -> None:
    a = env()
    last_second = datetime(2026, 10, 31, 23, 59, 59, tzinfo=HELSINKI)
    first_second = datetime(2026, 11, 1, 0, 0, 0, tzinfo=HELSINKI)
    await metering.publisher.publish(
        created(a, "v1", OCT_5),
        created(a, "v2", OCT_5),
        created(a, "v3", last_second),  # B-09: still October in Helsinki (21:59:59 UTC)
        created(a, "v4", first_second),  # B-09: November in Helsinki, October in UTC
        created(a, "v5", OCT_5),
        voided(a, "v5", OCT_5 + timedelta(days=3)),  # B-11: same month, not counted
        created(a, "v6", OCT_5),
        voided(a, "v6", first_second),  # B-11: later month, counts
        voided(a, "v7", OCT_5 + timedelta(days=2)),
        created(a, "v7", OCT_5),  # void before create, same month
        created(a, "bank", OCT_5, kind=DocumentKind.BANK_STATEMENT),  # B-10: not a voucher
    )
    october = await settled_usage(metering, a, "2026-10", "marker")
    november = await metering.usage(a, "2026-11")
    assert october["usage"]["vouchers"] == 4  # type: ignore[index]  # v1, v2, v3, v6
    assert november["usage"]["vouchers"] == 1  # type: ignore[index]  # v4
    assert october["status"] == "open"


async def test_an_event_delivered_three_times_and_a_voucher_under_two_event_ids_count_once(
    metering: Metering,
) -> None:
    a, b = env(), env()
    once = created(a, "v1", OCT_5)
    await metering.publisher.publish(once, once, once)
    await metering.publisher.publish(created(a, "v2", OCT_5), created(a, "v2", OCT_5 + timedelta(hours=1)))
    await metering.publisher.publish(
        pay(b, "p1", OCT_5), pay(b, "p1", OCT_5 + timedelta(days=10)), pay(b, "p2", OCT_5)
    )
    usage_a = await settled_usage(metering, a, "2026-10", "marker")
    usage_b = await settled_usage(metering, b, "2026-10", "marker")
    assert usage_a["usage"]["vouchers"] == 2  # type: ignore[index]
    assert usage_b["usage"]["payees"] == 2  # type: ignore[index]  # B-12: a person counts once a month


async def test_einvoices_count_as_vouchers_and_only_e_channels_carry_a_message_fee(
    metering: Metering,
) -> None:
    a = env()

    def sent(voucher: str, channel: InvoiceChannel) -> EInvoiceSentV1:
        return EInvoiceSentV1(
            event_id=uuid.uuid4(),
            occurred_at=OCT_5,
            producer="test",
            environment_id=a,
            voucher_id=voucher,
            channel=channel,
            sent_at=OCT_5,
        )

    await metering.publisher.publish(
        sent("s1", InvoiceChannel.OPERATOR),
        sent("s2", InvoiceChannel.BANK),
        sent("s3", InvoiceChannel.EMAIL),
        sent("s4", InvoiceChannel.PAPER),
    )
    usage = (await settled_usage(metering, a, "2026-10", "marker"))["usage"]
    assert usage["vouchers"] == 4  # type: ignore[index]  # B-13: every one is a voucher
    assert usage["einvoices_sent"] == 2  # type: ignore[index]  # B-13: operator and bank only


async def test_a_malformed_event_is_dead_lettered_with_its_reason_and_the_next_one_counts(
    metering: Metering,
) -> None:
    a = env()
    topic = "usage.voucher-created.v1"
    await metering.publisher.publish_raw(topic, b"{not json", key=a.encode())
    bad_schema = created(a, "x", OCT_5).model_dump(mode="json") | {"document_kind": "spaceship"}
    import json

    await metering.publisher.publish_raw(topic, json.dumps(bad_schema).encode(), key=a.encode())
    future = created(a, "future", metering.clock.now() + timedelta(days=30))
    await metering.publisher.publish(future, created(a, "good", OCT_5))

    usage = await settled_usage(metering, a, "2026-10", "marker")
    assert usage["usage"]["vouchers"] == 1  # type: ignore[index]

    def mine(letters: list[dict[str, object]]) -> list[dict[str, object]]:
        return [
            d for d in letters if d["original_key_b64"] == __import__("base64").b64encode(a.encode()).decode()
        ]

    letters = await read_topic(
        metering.kafka, dead_letter_topic("metering"), until=lambda ls: len(mine(ls)) >= 3
    )
    by_kind = {str(d["failure"]): str(d["reason"]) for d in mine(letters)}
    assert "Invalid JSON" in by_kind["malformed"]
    assert "document_kind" in by_kind["schema_violation"]
    assert "future" in by_kind["rejected"]
