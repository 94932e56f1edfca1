"""Schema-driven fuzzing of every service's OpenAPI over real HTTP: no input yields a 5xx.

Generic: the operations come from each running service's own OpenAPI, so routes added later are
fuzzed without editing this file. Seeded and sized for CI; `python -m benchmarks fuzz` sends more.
"""

from __future__ import annotations

import asyncio

import pytest

from devstack.fuzzing import fuzz_openapi
from devstack.testing import serve_http

from ..conftest import Stack

pytestmark = pytest.mark.integration

SEED = 20261202
EXAMPLES = 6
SERVICES = ("metering", "invoicing", "partners", "procountor-sync")


@pytest.mark.parametrize("service", SERVICES)
async def test_no_request_generated_from_the_openapi_is_answered_with_a_5xx(
    stack: Stack, service: str
) -> None:
    # A token with every role, so that requests reach each route's validation and use case.
    token = await stack.issuer.all_roles_auth().async_token()
    async with serve_http(stack.apps[service]) as base_url:
        result = await asyncio.to_thread(fuzz_openapi, base_url, examples=EXAMPLES, seed=SEED, token=token)

    assert result.server_errors == []
    # Past the policies: what answered was the routes themselves, not only 401s.
    assert sum(n for status, n in result.by_status.items() if status not in (401, 403)) > result.requests // 2
    assert result.operations >= 2
    assert result.requests >= result.operations * 2
