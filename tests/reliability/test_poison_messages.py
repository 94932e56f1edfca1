"""Issue 8 regressions over the real broker and PostgreSQL: each single message that stopped a consumer on main."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from billing_contracts.base import wire_json
from billing_contracts.contracts import ContractSignedV1
from billing_contracts.examples import example_of
from billing_contracts.registry import topic_for
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.testing import read_topic, wait_until
from invoicing.calendar import HELSINKI

from ..conftest import Stack
from .conftest import Databases, RawPublisher, Sent

pytestmark = pytest.mark.integration

VOUCHERS = topic_for(VoucherCreatedV1)
SIGNED = topic_for(ContractSignedV1)
#: November 2026 is still open on the stack's clock (2 November); its usage is counted, not adjusted.
AT = datetime(2026, 11, 1, 12, 0, tzinfo=HELSINKI)
DEEP = b'{"a":' * 1100 + b"1" + b"}" * 1100


def new_env() -> str:
    return f"env-rel-{uuid.uuid4().hex[:10]}"


def voucher(env: str, voucher_id: str) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=AT,
        producer="issue-8",
        environment_id=env,
        voucher_id=voucher_id,
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=AT,
    )


async def send(raw: RawPublisher, message: VoucherCreatedV1 | ContractSignedV1) -> Sent:
    return await raw.send(topic_for(type(message)), wire_json(message), message.kafka_key())


async def counted(stack: Stack, env: str, vouchers: int) -> bool:
    usage = (await stack.metering.get(f"/environments/{env}/usage/2026-11")).json()
    return bool(usage["usage"]["vouchers"] == vouchers)


async def month_closed(stack: Stack, month: str) -> bool:
    consumer = AIOKafkaConsumer(
        "metering.month-closed.v1",
        bootstrap_servers=stack.kafka.bootstrap_servers,
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while batch := await consumer.getmany(timeout_ms=1000, max_records=10_000):
            for records in batch.values():
                for record in records:
                    try:
                        if json.loads(record.value or b"").get("month") == month:
                            return True
                    except (ValueError, AttributeError):
                        continue
        return False
    finally:
        await consumer.stop()


async def letter_of(databases: Databases, schema: str, sent: Sent) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        return await databases.dead_letter(schema, sent)

    return await wait_until(found, within=30, what=f"a dead letter for {sent}")


async def test_json_nested_1100_deep_is_dead_lettered_and_the_valid_events_around_it_count(
    stack: Stack, raw: RawPublisher, databases: Databases
) -> None:
    env = new_env()
    await send(raw, voucher(env, "v1"))
    deep = await raw.send(VOUCHERS, DEEP, env.encode())
    await send(raw, voucher(env, "v2"))

    letter = await letter_of(databases, "metering", deep)
    await wait_until(lambda: counted(stack, env, 2), within=30, what="both valid vouchers counted")
    assert letter["failure"] == "malformed"
    assert "recursion limit exceeded" in letter["reason"]
    assert bytes(letter["value"]) == DEEP


async def test_json_nested_1100_deep_does_not_jam_invoicings_contract_commands(
    stack: Stack, raw: RawPublisher, databases: Databases
) -> None:
    env = new_env()
    signed = example_of(ContractSignedV1).model_copy(update={"event_id": uuid.uuid4(), "environment_id": env})
    assert isinstance(signed, ContractSignedV1)
    deep = await raw.send(SIGNED, DEEP, env.encode())
    await send(raw, signed)

    letter = await letter_of(databases, "invoicing", deep)

    async def contract() -> list[Any]:
        return list((await stack.invoicing.get("/contracts", params={"environment_id": env})).json())

    assert await wait_until(contract, within=30, what="the valid contract signed")
    assert letter["failure"] == "malformed"


async def test_a_nul_in_the_event_id_is_dead_lettered_and_the_batch_goes_on(
    stack: Stack, raw: RawPublisher, databases: Databases
) -> None:
    env = new_env()
    bad = voucher(env, "nul").model_dump(mode="json") | {"event_id": "bad\u0000id"}
    nul = await raw.send(VOUCHERS, json.dumps(bad).encode(), env.encode())
    await send(raw, voucher(env, "v1"))

    letter = await letter_of(databases, "metering", nul)
    await wait_until(lambda: counted(stack, env, 1), within=30, what="the valid voucher counted")
    assert (letter["failure"], letter["event_id"]) == ("schema_violation", "badid")
    assert letter["reason"].startswith("event_id: ")


async def test_a_nul_in_a_stored_field_is_refused_with_its_path_and_no_sql_in_the_reason(
    stack: Stack, raw: RawPublisher, databases: Databases
) -> None:
    # On main the voucher reached PostgreSQL, which refused the NUL: the reason carried the
    # INSERT statement and its parameters.
    env = new_env()
    nul = await send(raw, voucher(env, "V-\u0000-1"))
    await send(raw, voucher(env, "v1"))

    letter = await letter_of(databases, "metering", nul)
    await wait_until(lambda: counted(stack, env, 1), within=30, what="the valid voucher counted")
    assert (letter["failure"], letter["reason"]) == (
        "schema_violation",
        "voucher_id: control character U+0000 is not allowed",
    )


@pytest.mark.parametrize("key", [b"env-someone-else", None], ids=["another-environment", "no-key"])
async def test_a_record_keyed_wrongly_or_not_at_all_is_dead_lettered_and_not_counted(
    stack: Stack, raw: RawPublisher, databases: Databases, key: bytes | None
) -> None:
    env = new_env()
    wrong = voucher(env, "wrong")
    sent = await raw.send(VOUCHERS, wire_json(wrong), key)
    await send(raw, voucher(env, "v1"))

    letter = await letter_of(databases, "metering", sent)
    await wait_until(lambda: counted(stack, env, 1), within=30, what="only the rightly keyed voucher counted")
    assert letter["failure"] == "schema_violation"
    assert letter["reason"].startswith("<key>: ")
    assert f"environment_id ('{env}')" in letter["reason"]


async def test_a_2_mb_message_is_dead_lettered_in_a_form_that_fits_and_later_messages_still_go_out(
    stack: Stack, raw: RawPublisher, databases: Databases
) -> None:
    # On main its dead letter (2.7 MB of base64) could never be published, and every later
    # message of metering waited behind it in the outbox: the month close never reached invoicing.
    env = new_env()
    huge = json.dumps(voucher(env, "huge").model_dump(mode="json") | {"note": "x" * 2_000_000}).encode()
    sent = await raw.send(VOUCHERS, huge, env.encode())
    await send(raw, voucher(env, "v1"))

    row = await letter_of(databases, "metering", sent)
    assert row["reason"].startswith("<size>: the record is 2,")
    assert (row["value_size"], row["value_truncated"]) == (len(huge), True)

    def ours(m: dict[str, Any]) -> bool:
        return (m["original_topic"], m["original_partition"], m["original_offset"]) == (
            VOUCHERS,
            sent.partition,
            sent.offset,
        )

    published = await read_topic(
        stack.kafka,
        "metering.dead-letter.v1",
        until=lambda ms: any(ours(m) for m in ms),
    )
    letter = next(m for m in published if ours(m))  # at least once: a repeat is the same letter
    assert letter["original_truncated"] is True
    assert letter["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(base64.b64decode(letter["original_value_b64"]))

    closed = await stack.metering.post("/months/2026-09/close")
    assert closed.status_code == 200
    # The fuzz tests publish garbage to this topic too: read what decodes.
    await wait_until(
        lambda: month_closed(stack, "2026-09"), within=30, what="metering's close of 2026-09 on Kafka"
    )
    await wait_until(lambda: counted(stack, env, 1), within=30, what="the valid voucher counted")
