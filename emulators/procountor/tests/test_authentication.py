"""The client-credentials token flow: form body only, bad credentials, expiry."""

from __future__ import annotations

from typing import Any

import pytest

CLIENT_ID = "test-client"
GOOD_FORM = {
    "grant_type": "client_credentials",
    "client_id": CLIENT_ID,
    "client_secret": "test-secret-value",
    "api_key": "test-api-key-value",
}


async def test_a_token_is_issued_for_known_credentials_in_the_form_body(emulator: Any) -> None:
    response = await emulator.http.post("/api/oauth/token", data=GOOD_FORM)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]


async def test_credentials_in_the_url_query_are_refused(emulator: Any) -> None:
    response = await emulator.http.post("/api/oauth/token", params=GOOD_FORM)

    assert response.status_code == 400
    assert response.json()["errors"][0]["status"] == 400


async def test_the_redirect_uri_may_accompany_the_form(emulator: Any) -> None:
    form = {**GOOD_FORM, "redirect_uri": "https://example.com/callback"}
    response = await emulator.http.post("/api/oauth/token", data=form)

    assert response.status_code == 200


@pytest.mark.parametrize("field", ["client_secret", "api_key", "client_id"])
async def test_a_wrong_credential_is_answered_401_without_echoing_it(emulator: Any, field: str) -> None:
    response = await emulator.http.post("/api/oauth/token", data={**GOOD_FORM, field: "wrong-value-xyz"})

    assert response.status_code == 401
    assert response.json()["errors"][0]["status"] == 401
    assert "wrong-value-xyz" not in response.text
    assert "test-secret-value" not in response.text


async def test_an_unknown_grant_type_is_invalid(emulator: Any) -> None:
    response = await emulator.http.post("/api/oauth/token", data={**GOOD_FORM, "grant_type": "password"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "grant_type"


async def test_api_calls_without_a_token_are_unauthorized(emulator: Any) -> None:
    response = await emulator.http.get("/api/products")

    assert response.status_code == 401
    assert response.json()["errors"][0]["status"] == 401


async def test_a_token_stops_working_when_its_lifetime_ends(open_emulator: Any, clock: Any) -> None:
    async with open_emulator(token_lifetime_seconds=60) as emulator:
        await emulator.login()
        assert (await emulator.call("GET", "/api/products")).status_code == 200

        clock.advance(61)
        response = await emulator.call("GET", "/api/products")

        assert response.status_code == 401
        assert response.json()["errors"][0]["message"] == "Access token has expired."
        await emulator.login()
        assert (await emulator.call("GET", "/api/products")).status_code == 200


async def test_the_inspection_endpoint_can_expire_every_token(emulator: Any) -> None:
    await emulator.login()
    await emulator.http.post("/_emulator/tokens/expire")

    assert (await emulator.call("GET", "/api/products")).status_code == 401


async def test_status_and_default_vats_are_served(emulator: Any) -> None:
    status = await emulator.http.get("/api/status")
    vats = await emulator.ok("GET", "/api/vats/default")

    assert status.json()["status"] == "OK"
    assert {str(r) for r in vats["vatRates"]} >= {"25.5", "14", "13.5", "10", "0"}
    assert vats["vatStatuses"][0]["vatStatus"] == 1
