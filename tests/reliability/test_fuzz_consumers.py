"""Fuzzing every consumer of every service over the real broker: valid messages applied, bad ones dead-lettered.

Generic: the subscriptions come from each running service (`host.consumers`), so consumers added
later are fuzzed without editing this file. Seeded and sized for CI; `python -m benchmarks fuzz`
runs the same with more inputs.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from devstack.fuzzing import FuzzInput, inputs_for
from devstack.testing import wait_until
from service_runtime.consumer import IdempotentConsumer
from service_runtime.host import ServiceHost

from ..conftest import Stack
from .conftest import Databases, RawPublisher, Sent, lag

pytestmark = pytest.mark.integration

SEED = 20261202
#: Per topic: valid messages, schema-derived invalid ones, byte mutations (each kind once).
VALID, SCHEMA_INVALID, BYTE_INVALID = 2, 5, 8
SERVICES = ("metering", "invoicing", "partners", "procountor-sync")


def subscriptions(stack: Stack, service: str) -> tuple[ServiceHost, list[IdempotentConsumer[Any]]]:
    host: ServiceHost = stack.apps[service].state.host
    return host, list(host.consumers)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_consumer_applies_valid_messages_and_dead_letters_the_rest_with_a_reason(
    stack: Stack, raw: RawPublisher, databases: Databases, service: str
) -> None:
    host, consumers = subscriptions(stack, service)
    assert consumers, f"{service} subscribes to nothing"
    schema = host.tables.dead_letters.schema
    assert schema is not None
    rng = random.Random(f"{SEED}-{service}")
    sent: list[tuple[Sent, FuzzInput, str]] = []
    for consumer in consumers:
        for topic, contract in sorted(consumer.contracts.items()):
            for fuzz in inputs_for(
                topic,
                contract,
                rng=rng,
                valid=VALID,
                schema_invalid=SCHEMA_INVALID,
                byte_invalid=BYTE_INVALID,
            ):
                sent.append((await raw.send(topic, fuzz.value, fuzz.key), fuzz, consumer.group))

    async def verdicts() -> dict[int, str] | None:
        processed = await databases.processed(schema, [f.event_id for _, f, _ in sent if f.event_id])
        outcome: dict[int, str] = {}
        for i, (where, fuzz, _) in enumerate(sent):
            letter = await databases.dead_letter(schema, where)
            if letter is not None:
                outcome[i] = f"{letter['failure']}: {letter['reason']}"
            elif fuzz.event_id in processed:
                outcome[i] = "applied"
            else:
                return None
        return outcome

    outcome = await wait_until(
        verdicts, within=90, interval=0.5, what=f"a verdict on every input to {service}"
    )

    wrong = []
    for i, (where, fuzz, _) in enumerate(sent):
        verdict = outcome[i]
        if fuzz.valid:
            # Applied, or refused by a business rule with its reason (e.g. a second signing of
            # the example's environment): never a decoding failure, never a crash.
            ok = verdict == "applied" or (
                verdict.startswith("rejected: ") and "processing error" not in verdict
            )
        else:
            ok = (
                verdict.startswith(("malformed: ", "schema_violation: "))
                and len(verdict.split(": ", 1)[1]) > 0
            )
        if not ok:
            wrong.append((where, fuzz.kind, fuzz.valid, verdict[:200]))
    assert wrong == []
    groups = {group: sorted({w.topic for w, _, g in sent if g == group}) for _, _, group in sent}

    async def caught_up() -> bool:
        behind = await asyncio.gather(*(lag(stack.kafka, g, topics) for g, topics in groups.items()))
        return sum(behind) == 0

    await wait_until(caught_up, within=30, what=f"{service}'s groups committing to the end")
    counts = {"valid": sum(f.valid for _, f, _ in sent), "invalid": sum(not f.valid for _, f, _ in sent)}
    assert counts["valid"] >= VALID * len(groups)
    assert counts["invalid"] >= (SCHEMA_INVALID + BYTE_INVALID) * len(groups) // 2
