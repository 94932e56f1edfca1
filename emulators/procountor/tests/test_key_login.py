"""The key login (ref §2.2): Procountor's sign-in form, consent, the code, the API key of that user."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from procountor_emulator import LoginUser

from .conftest import CLIENT_ID, CLIENT_SECRET, EmulatorFactory

REDIRECT = "https://integrator.example/procountor/callback"
USER = LoginUser("kirsi.kirjanpitaja", "oikea-salasana", user_id=7)
LOGIN = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT, "state": "s-1"}


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


async def exchange(emulator: Any, code: str) -> Any:
    form = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT,
        "code": code,
    }
    return await emulator.http.post("/api/oauth/key", data=form)


async def test_the_user_signs_in_consents_and_the_code_gives_an_api_key_of_that_user_once(
    open_emulator: EmulatorFactory,
) -> None:
    async with open_emulator(login_users=(USER,)) as emulator:
        page = await emulator.http.get("/keylogin", params=LOGIN)
        fields = hidden_fields(page.text)
        signed_in = await emulator.http.post(
            "/keylogin",
            data={**fields, "username": USER.username, "password": USER.password, "decision": "allow"},
        )
        back = urlsplit(signed_in.headers["location"])
        query = parse_qs(back.query)
        exchanged = await exchange(emulator, query["code"][0])
        again = await exchange(emulator, query["code"][0])
        api_key = exchanged.json()["api_key"]
        token = await emulator.http.post(
            "/api/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "api_key": api_key,
            },
        )
        session = await emulator.http.get(
            "/api/sessioninfo", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="password" type="password"' in page.text
    assert fields == LOGIN  # the login request travels with the form
    assert signed_in.status_code == 303
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    assert query["state"] == ["s-1"]
    assert query["expires_in"] == ["300"]
    assert exchanged.status_code == 200
    assert again.status_code == 400  # a code is used once
    assert token.status_code == 200
    assert session.json()["userId"] == 7  # the key is the signed-in user's


async def test_a_wrong_password_shows_the_form_again_with_an_error_and_no_code(
    open_emulator: EmulatorFactory,
) -> None:
    async with open_emulator(login_users=(USER,)) as emulator:
        wrong = await emulator.http.post(
            "/keylogin",
            data={**LOGIN, "username": USER.username, "password": "arvaus", "decision": "allow"},
        )
        unknown = await emulator.http.post(
            "/keylogin",
            data={**LOGIN, "username": "nobody", "password": USER.password, "decision": "allow"},
        )

    assert wrong.status_code == 401
    assert "location" not in wrong.headers
    assert "Wrong username or password." in wrong.text
    assert "arvaus" not in wrong.text  # the password is never echoed
    assert hidden_fields(wrong.text) == LOGIN  # the form again, ready for another try
    assert unknown.status_code == 401


async def test_deny_goes_back_with_access_denied_and_no_code(open_emulator: EmulatorFactory) -> None:
    async with open_emulator(login_users=(USER,)) as emulator:
        denied = await emulator.http.post("/keylogin", data={**LOGIN, "decision": "deny"})

    query = parse_qs(urlsplit(denied.headers["location"]).query)
    assert denied.status_code == 303
    assert query == {"error": ["access_denied"], "state": ["s-1"]}


async def test_what_the_request_carries_is_escaped_on_the_page(open_emulator: EmulatorFactory) -> None:
    async with open_emulator() as emulator:
        page = await emulator.http.get("/keylogin", params={**LOGIN, "state": '"><script>alert(1)</script>'})

    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


async def test_a_login_for_an_unknown_client_or_another_redirect_is_refused(
    open_emulator: EmulatorFactory,
) -> None:
    async with open_emulator() as emulator:
        unknown = await emulator.http.get("/keylogin", params={**LOGIN, "client_id": "someone"})
        posted = await emulator.http.post(
            "/keylogin", data={**LOGIN, "client_id": "someone", "username": "x", "password": "y"}
        )

    assert unknown.status_code == 400
    assert posted.status_code == 400


async def test_with_auto_consent_for_tests_the_page_redirects_at_once(open_emulator: EmulatorFactory) -> None:
    async with open_emulator(login_users=(USER,), keylogin_auto_consent=True) as emulator:
        login = await emulator.http.get("/keylogin", params=LOGIN)
        code = parse_qs(urlsplit(login.headers["location"]).query)["code"][0]
        exchanged = await exchange(emulator, code)

    assert login.status_code == 302
    assert exchanged.status_code == 200
