"""`invoicing serve | migrate | trigger-billing-run`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from zoneinfo import ZoneInfo

import httpx

from invoicing.app import create_app
from invoicing.settings import InvoicingSettings
from service_runtime.cli import run_cli


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://invoicing", help="base URL of the invoicing service")
    parser.add_argument("--today", type=dt.date.fromisoformat, help="default: today in Helsinki")


def _trigger(args: argparse.Namespace) -> int:
    today = args.today or dt.datetime.now(ZoneInfo("Europe/Helsinki")).date()
    response = httpx.post(
        f"{args.url}/billing-runs/scheduled", json={"today": today.isoformat()}, timeout=600
    )
    print(response.text)
    return 0 if response.is_success else 1


def main() -> int:
    return run_cli(
        prog="invoicing",
        settings_factory=InvoicingSettings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations="invoicing:migrations",
        extra={
            "trigger-billing-run": (
                "call the daily billing-run trigger (for the CronJob)",
                _configure,
                _trigger,
            )
        },
    )


if __name__ == "__main__":
    sys.exit(main())
