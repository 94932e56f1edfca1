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

    def post(self, url: str, *, json: Any, timeout: float) -> httpx.Response:
        self.bodies.append((url, json))
        status = self.statuses.pop(0)
        return httpx.Response(status, json={"status": status}, request=httpx.Request("POST", url))


def test_the_trigger_posts_todays_date_and_exits_0_on_success() -> None:
    fake, said = FakeInvoicing(200), []
    code = trigger(
        "http://invoicing", TODAY, wait_seconds=60, poll_seconds=1, post=fake.post, say=said.append
    )
    assert code == 0
    assert fake.bodies == [("http://invoicing/billing-runs/scheduled", {"today": "2026-11-02"})]


def test_the_trigger_asks_again_while_metering_has_not_closed_the_month() -> None:
    fake, pauses, said = FakeInvoicing(409, 409, 200), [], []
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

    def unreachable(url: str, *, json: Any, timeout: float) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert (
        trigger("http://x", TODAY, wait_seconds=60, poll_seconds=1, post=unreachable, say=lambda _: None) == 1
    )
