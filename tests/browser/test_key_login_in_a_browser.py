"""I-06 in a real browser: an operator starts procountor-sync's key login with her token, signs in on
Procountor's key-login page (the emulator's form), and procountor-sync ends up holding an API key
that Procountor accepts — a key that never shows in the pages, the answers or the logs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from playwright.async_api import Request, Response, Route, async_playwright
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.broker import free_port
from devstack.browser import CHROMIUM_ARGS, chromium_executable
from devstack.infra import KafkaTarget, async_url, create_database, drop_database
from devstack.issuer import DevIssuer
from devstack.procountor import CLIENT_ID, CLIENT_SECRET, EmulatorProcess
from devstack.testing import migrate, running, serve_http
from procountor_sync.app import create_app
from procountor_sync.settings import ProcountorSyncSettings
from procountor_sync.tables import credentials
from service_runtime.clock import SystemClock

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CREDENTIAL_KEY = Fernet.generate_key().decode()
USERNAME = "kirsi.kirjanpitaja"
PASSWORD = "oikea-salasana-" + uuid.uuid4().hex[:8]


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    name = f"keylogin_{uuid.uuid4().hex[:10]}"
    yield async_url(create_database(postgres_admin_url, name))
    drop_database(postgres_admin_url, name)


async def stored_api_key(database_url: str) -> str:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            ciphertext = (await connection.execute(select(credentials.c.ciphertext))).scalar_one()
    finally:
        await engine.dispose()
    return Fernet(CREDENTIAL_KEY.encode()).decrypt(ciphertext).decode()


async def test_an_operator_fetches_the_api_key_by_signing_in_on_procountors_page_in_a_browser(
    kafka: KafkaTarget,
    database: str,
    oidc_issuer: DevIssuer,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    executable = chromium_executable()
    await migrate(database, "procountor_sync:migrations")
    emulator_log = tmp_path / "emulator.log"
    port = free_port()
    sync_url = f"http://127.0.0.1:{port}"
    # Procountor's login form, as in production: no auto-consent; one user of the company.
    with EmulatorProcess(
        log_path=emulator_log,
        env={
            "PROCOUNTOR_EMULATOR_LOGIN_USERNAME": USERNAME,
            "PROCOUNTOR_EMULATOR_LOGIN_PASSWORD": PASSWORD,
            "PROCOUNTOR_EMULATOR_KEYLOGIN_AUTO_CONSENT": "",
        },
    ) as emulator:
        settings = ProcountorSyncSettings(
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            kafka_enable_idempotence=kafka.enable_idempotence,
            database_url=SecretStr(database),
            procountor_base_url=emulator.api_url,
            procountor_client_id=SecretStr(CLIENT_ID),
            procountor_client_secret=SecretStr(CLIENT_SECRET),
            procountor_api_key=SecretStr(""),  # no configured key: only the key login gives one
            credential_key=SecretStr(CREDENTIAL_KEY),
            keylogin_redirect_uri=f"{sync_url}/procountor/key-login/callback",
            auth_issuer=oidc_issuer.url,
            log_format="console",
        )
        app = create_app(settings, SystemClock())
        operator_token = oidc_issuer.user_token("olli.operator")
        viewer = oidc_issuer.user_auth("ville.viewer")
        async with running(app) as http, serve_http(app, port=port), async_playwright() as playwright:
            before = (await http.get("/procountor/connection", auth=viewer)).json()
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
            )
            requests: list[Request] = []
            responses: list[Response] = []
            try:
                page = await browser.new_page()

                def on_request(request: Request) -> None:
                    requests.append(request)

                def on_response(response: Response) -> None:
                    responses.append(response)

                page.on("request", on_request)
                page.on("response", on_response)

                # The operator's token goes to procountor-sync's start of the login, and nowhere else
                # (a gateway or the operator's tool adds it; Procountor's page never sees it).
                # (Fetched with the token, the redirect handed back to the browser to follow by itself:
                # headers given to `route.continue_` would follow the redirect to Procountor too.)
                async def with_token(route: Route) -> None:
                    headers = route.request.headers | {"authorization": f"Bearer {operator_token}"}
                    answer = await route.fetch(headers=headers, max_redirects=0)
                    await route.fulfill(response=answer)

                await page.route(f"{sync_url}/procountor/key-login", with_token)
                await page.goto(f"{sync_url}/procountor/key-login")
                await page.get_by_label("Username").wait_for()
                form_url = page.url

                # A wrong password: the form again, with the error.
                await page.get_by_label("Username").fill(USERNAME)
                await page.get_by_label("Password").fill("väärä-salasana")
                await page.get_by_role("button", name="Sign in and allow").click()
                error = await page.get_by_role("alert").inner_text()
                pages = [await page.content()]

                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in and allow").click()
                await page.wait_for_url(f"{sync_url}/procountor/key-login/callback?**")
                pages.append(await page.content())
                callback = next(r for r in responses if "/procountor/key-login/callback" in r.url)
                callback_body = await callback.text()
            finally:
                await browser.close()
            after = await http.get("/procountor/connection", auth=viewer)
            anonymous_status = await http.get("/procountor/connection", auth=None)
        api_key = await stored_api_key(database)
    emulator_origin = emulator.url
    logs = capfd.readouterr()
    captured = logs.out + logs.err + emulator_log.read_text(encoding="utf-8", errors="replace")

    assert form_url.startswith(f"{emulator_origin}/keylogin?")  # the browser went to Procountor's page
    assert error == "Wrong username or password."
    assert callback.status == 200
    assert httpx.Response(200, content=callback_body).json() == {
        "stored": True,
        "started_by": "olli.operator",  # the operator of the token, bound by the login's state
    }
    # Before, procountor-sync had no key; after, Procountor accepts the key from the login, whose
    # user is the one who signed in (the emulator's login user, id 2).
    assert (before["api_key"], before["connected"]) == ("none", False)
    assert after.status_code == 200
    assert after.json() | {"key_stored_at": None} == {
        "api_key": "key_login",
        "key_stored_by": "olli.operator",
        "key_stored_at": None,
        "connected": True,
        "procountor_user_id": 2,
        "company_name": "Emulated Company Oy",
        "error": None,
    }
    assert anonymous_status.status_code == 401
    # Our bearer token never went to Procountor's page.
    to_procountor = [r for r in requests if r.url.startswith(emulator_origin)]
    assert to_procountor
    assert all("authorization" not in r.headers for r in to_procountor)
    # The key: long, and nowhere to be seen.
    assert len(api_key) >= 32
    for text in (*pages, callback_body, after.text, captured):
        assert api_key not in text
    assert PASSWORD not in captured
