"""An operator opens a service's API docs in a real browser, signs in at the dev issuer and calls a
protected route: Swagger UI, authorization code with PKCE, the bearer token on the call."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from devstack.browser import CHROMIUM_ARGS, chromium_executable
from devstack.testing import serve_http

from ..conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_an_operator_signs_in_on_the_api_docs_and_calls_a_protected_route(stack: Stack) -> None:
    executable = chromium_executable()
    async with serve_http(stack.apps["invoicing"]) as url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/docs")
            await page.locator("button.authorize").first.click()

            # The OpenID Connect scheme: Swagger UI read the issuer's discovery document (CORS).
            heading = page.get_by_role("heading", name="oidc (OAuth2, authorization_code with PKCE)")
            oidc = page.locator(".auth-container", has=heading)
            await heading.wait_for()
            # The service told Swagger UI its public client (AUTH_DOCS_CLIENT_ID): nothing to type.
            assert await oidc.locator("#client_id_authorization_code").input_value() == "billing-dev"
            async with page.expect_popup() as opened:
                await oidc.locator("button.authorize").click()
            login = await opened.value
            # The dev issuer's sign-in page lists its dev users; the operator picks herself.
            # Its redirect to /docs/oauth2-redirect hands the code to Swagger UI and closes the window
            # (so fast that the click may find its page gone).
            closed = asyncio.Event()

            def on_close(_: Page) -> None:
                closed.set()

            login.on("close", on_close)
            with contextlib.suppress(PlaywrightError):
                await login.get_by_role("link", name="Olli Operaattori").click(no_wait_after=True)
            await asyncio.wait_for(closed.wait(), timeout=30)
            await oidc.get_by_text("Authorized", exact=True).wait_for()
            await oidc.locator("button.btn-done").click()

            operation = page.locator('.opblock-summary-path[data-path="/dead-letters"]').first
            await operation.click()
            block = page.locator(".opblock.is-open")
            await block.locator("button.try-out__btn").click()
            async with page.expect_response(
                lambda r: "/dead-letters?" in r.url or r.url.endswith("/dead-letters")
            ) as answered:
                await block.locator("button.execute").click()
            response = await answered.value
            sent = await response.request.all_headers()
            body = await response.json()
            shown = await block.locator(
                ".live-responses-table tr.response td.response-col_status"
            ).first.inner_text()
        finally:
            await browser.close()

    assert response.status == 200
    assert sent["authorization"].startswith("Bearer ")
    assert set(body) == {"items", "next_after"}
    assert shown.strip() == "200"
