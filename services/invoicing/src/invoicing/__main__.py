"""`invoicing serve | migrate | trigger-billing-run`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable

import httpx

from invoicing.app import create_app
from invoicing.settings import InvoicingSettings
from service_runtime.cli import run_cli
from service_runtime.clock import SystemClock, today_in_helsinki
from service_runtime.token_client import client_credentials_auth


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://invoicing", help="base URL of the invoicing service")
    parser.add_argument("--today", type=dt.date.fromisoformat, help="default: today in Helsinki")
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=1500,
        help="how long to keep asking while metering has not closed the month (409); default 25 min",
    )
    parser.add_argument("--poll-seconds", type=float, default=60, help="pause between asks while waiting")


def trigger(
    url: str,
    today: dt.date,
    *,
    wait_seconds: float,
    poll_seconds: float,
    post: Callable[..., httpx.Response] = httpx.post,
    auth: httpx.Auth | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> int:
    """Ask invoicing to run today's billing (B-03); wait while the month is not closed; 0 on success.

    The endpoint decides whether today is a run day and is idempotent, so the CronJob may call
    this every day and a Job retry is always safe. A 409 means metering has not closed the month
    yet: an open month is never billed, so the command asks again until `wait_seconds` pass.
    With `auth` (the CronJob's client credentials, issue 12) every call carries a bearer token.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            response = post(
                f"{url}/billing-runs/scheduled", json={"today": today.isoformat()}, timeout=1800, auth=auth
            )
        except httpx.HTTPError as exc:
            say(f"invoicing did not answer: {type(exc).__name__}: {exc}")
            return 1
        if response.status_code == 409 and time.monotonic() + poll_seconds < deadline:
            say(f"waiting for metering to close the month: {response.text}")
            sleep(poll_seconds)
            continue
        say(response.text)
        return 0 if response.is_success else 1


def _trigger(args: argparse.Namespace) -> int:
    # The CronJob asks for the day it is in Helsinki; tests and operators pass --today.
    today = args.today or today_in_helsinki(SystemClock())
    auth = client_credentials_auth(InvoicingSettings())
    return trigger(args.url, today, wait_seconds=args.wait_seconds, poll_seconds=args.poll_seconds, auth=auth)


def main() -> int:
    return run_cli(
        prog="invoicing",
        settings_factory=InvoicingSettings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations="invoicing:migrations",
        extra={
            "trigger-billing-run": (
                "call the daily billing-run trigger (for the CronJob); waits while the month is open",
                _configure,
                _trigger,
            )
        },
    )


if __name__ == "__main__":
    sys.exit(main())
