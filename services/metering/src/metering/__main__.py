"""`metering serve | migrate`."""

from __future__ import annotations

import sys

from metering.app import create_app
from metering.settings import MeteringSettings
from service_runtime.cli import run_cli


def main() -> int:
    return run_cli(
        prog="metering",
        settings_factory=MeteringSettings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations="metering:migrations",
    )


if __name__ == "__main__":
    sys.exit(main())
