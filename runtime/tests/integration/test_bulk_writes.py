"""Bulk writes over column arrays on a real PostgreSQL: every value arrives exactly as given."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service_runtime.bulk import insert_rows, joined_text

from .conftest import RuntimeTestService

pytestmark = pytest.mark.integration

AWKWARD = ["plain", "with,comma", 'with "quotes"', "with {braces}", "with\\backslash", "ääkkönen", " spaced "]


async def stored(service: RuntimeTestService) -> dict[str, int]:
    async with service.sessions() as session:
        rows = await session.execute(select(service.counts.c.key, service.counts.c.n))
        return {key: n for key, n in rows.tuples()}  # noqa: C416


async def test_text_values_joined_into_one_parameter_are_stored_exactly(service: RuntimeTestService) -> None:
    rows = [{"key": key, "n": n} for n, key in enumerate(AWKWARD)]
    assert joined_text([r["key"] for r in rows]) is not None

    async with service.sessions.begin() as session:
        await insert_rows(session, service.counts, rows)

    assert await stored(service) == {key: n for n, key in enumerate(AWKWARD)}


@pytest.mark.parametrize(
    "keys", [["a\x1fb", "c"], ["", "d"]], ids=["a value holding the separator", "an empty value"]
)
async def test_values_that_cannot_be_joined_travel_as_an_array_and_are_stored_exactly(
    service: RuntimeTestService, keys: list[str]
) -> None:
    assert joined_text(keys) is None

    async with service.sessions.begin() as session:
        await insert_rows(session, service.counts, [{"key": key, "n": 7} for key in keys])

    assert await stored(service) == dict.fromkeys(keys, 7)
