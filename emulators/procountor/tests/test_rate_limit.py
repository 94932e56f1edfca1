"""At most N requests per second per API client, over a sliding one-second window."""

from __future__ import annotations

from typing import Any


async def test_the_request_over_the_limit_is_answered_429_with_an_error_body(
    open_emulator: Any, clock: Any
) -> None:
    async with open_emulator() as emulator:
        await emulator.login()  # the token request counts as the first of 20
        for _ in range(19):
            assert (await emulator.call("GET", "/api/products")).status_code == 200

        response = await emulator.call("GET", "/api/products")

        assert response.status_code == 429
        assert response.json()["errors"][0]["status"] == 429
        assert int(response.headers["Retry-After"]) >= 1


async def test_the_window_slides_so_waiting_restores_service(open_emulator: Any, clock: Any) -> None:
    async with open_emulator(rate_limit_requests=3) as emulator:
        await emulator.login()
        clock.advance(0.5)
        await emulator.call("GET", "/api/products")
        await emulator.call("GET", "/api/products")
        assert (await emulator.call("GET", "/api/products")).status_code == 429

        clock.advance(0.6)  # the login has left the window, the two calls have not

        assert (await emulator.call("GET", "/api/products")).status_code == 200
        assert (await emulator.call("GET", "/api/products")).status_code == 429


async def test_refused_requests_are_counted_in_the_emulator_stats(open_emulator: Any, clock: Any) -> None:
    async with open_emulator(rate_limit_requests=2) as emulator:
        await emulator.login()
        await emulator.call("GET", "/api/products")
        assert (await emulator.call("GET", "/api/products")).status_code == 429

        stats = (await emulator.http.get("/_emulator/stats")).json()
        assert stats["rateLimited"] == 1
