"""Fuzzing every consumer of every service over the real broker: valid messages applied, bad ones dead-lettered.

Generic: the subscriptions come from each running service (`host.consumers`), so consumers added
later are fuzzed without editing this file. Seeded and sized for CI; `python -m benchmarks fuzz`
runs the same with more inputs.
"""

from __future__ import annotations

import pytest

from devstack.fuzzing import fuzz_consumers
from service_runtime.host import ServiceHost

from ..conftest import Stack
from .conftest import Databases

pytestmark = pytest.mark.integration

SEED = 20261202
#: Per topic: valid messages, schema-derived invalid ones, byte mutations (each kind once).
VALID, SCHEMA_INVALID, BYTE_INVALID = 2, 5, 8
SERVICES = ("metering", "invoicing", "partners", "procountor-sync")


@pytest.mark.parametrize("service", SERVICES)
async def test_every_consumer_applies_valid_messages_and_dead_letters_the_rest_with_a_reason(
    stack: Stack, databases: Databases, service: str
) -> None:
    host: ServiceHost = stack.apps[service].state.host
    assert host.consumers, f"{service} subscribes to nothing"

    result = await fuzz_consumers(
        host,
        stack.kafka,
        databases.engine,
        seed=SEED,
        valid=VALID,
        schema_invalid=SCHEMA_INVALID,
        byte_invalid=BYTE_INVALID,
    )

    assert result.wrong == []
    topics = sum(len(c.contracts) for c in host.consumers)
    assert result.inputs == topics * (VALID + SCHEMA_INVALID + BYTE_INVALID)
    assert result.valid >= topics * VALID
    assert result.dead_lettered == result.inputs - result.valid
    assert result.by_kind["bytes"] == topics * BYTE_INVALID
