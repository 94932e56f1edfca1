"""`invoicing trigger-billing-run`, the CronJob's command: asks, waits while the month is open, exits 0 or 1."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from invoicing.__main__ import trigger

TODAY = dt.date(2026, 11, 2)


class FakeInvoicing:
    """Answers POST /billing-runs/scheduled with the given statuses in turn."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[Any] = []
        self.auths: list[httpx.Auth | None] = []

    def post(self, url: str, *, json: Any, timeout: float, auth: httpx.Auth | None = None) -> httpx.Response:
        self.bodies.append((url, json))
        self.auths.append(auth)
        status = self.statuses.pop(0)
        return httpx.Response(status, json={"status": status}, request=httpx.Request("POST", url))


def test_the_trigger_posts_todays_date_and_exits_0_on_success() -> None:
    fake, said = FakeInvoicing(200), list[str]()
    code = trigger(
        "http://invoicing", TODAY, wait_seconds=60, poll_seconds=1, post=fake.post, say=said.append
    )
    assert code == 0
    assert fake.bodies == [("http://invoicing/billing-runs/scheduled", {"today": "2026-11-02"})]


def test_the_trigger_asks_again_while_metering_has_not_closed_the_month() -> None:
    fake, pauses, said = FakeInvoicing(409, 409, 200), list[float](), list[str]()
    code = trigger(
        "http://invoicing",
        TODAY,
        wait_seconds=60,
        poll_seconds=5,
        post=fake.post,
        sleep=pauses.append,
        say=said.append,
    )
    assert (code, pauses) == (0, [5, 5])
    assert sum(line.startswith("waiting for metering") for line in said) == 2


def test_the_trigger_gives_up_with_1_when_the_wait_is_over_so_that_the_job_fails() -> None:
    fake = FakeInvoicing(409)
    code = trigger(
        "http://invoicing", TODAY, wait_seconds=0, poll_seconds=5, post=fake.post, say=lambda _: None
    )
    assert code == 1


def test_the_trigger_exits_1_on_an_error_or_no_answer() -> None:
    assert (
        trigger(
            "http://x",
            TODAY,
            wait_seconds=60,
            poll_seconds=1,
            post=FakeInvoicing(500).post,
            say=lambda _: None,
        )
        == 1
    )

    def unreachable(url: str, *, json: Any, timeout: float, auth: httpx.Auth | None = None) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert (
        trigger("http://x", TODAY, wait_seconds=60, poll_seconds=1, post=unreachable, say=lambda _: None) == 1
    )


def test_the_cronjob_calls_with_its_client_credentials_when_a_token_url_is_set() -> None:
    from pydantic import SecretStr

    from invoicing.settings import InvoicingSettings
    from service_runtime.token_client import ClientCredentialsAuth, client_credentials_auth

    settings = InvoicingSettings(
        oauth_token_url="https://login.example.test/token",
        oauth_client_id="billing-run-cronjob",
        oauth_client_secret=SecretStr("cronjob-secret"),
    )
    auth = client_credentials_auth(settings)
    fake = FakeInvoicing(409, 200)

    code = trigger(
        "http://invoicing",
        TODAY,
        wait_seconds=60,
        poll_seconds=0,
        post=fake.post,
        sleep=lambda _: None,
        say=lambda _: None,
        auth=auth,
    )

    assert code == 0
    assert isinstance(auth, ClientCredentialsAuth)
    assert fake.auths == [auth, auth]  # every ask, including the ones while the month is open


def test_without_a_token_url_the_trigger_calls_without_a_token() -> None:
    from invoicing.settings import InvoicingSettings
    from service_runtime.token_client import client_credentials_auth

    assert client_credentials_auth(InvoicingSettings()) is None
