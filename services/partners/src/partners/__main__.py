"""`partners serve | migrate`."""

from __future__ import annotations

import sys

from partners.app import create_app
from partners.settings import PartnersSettings
from service_runtime.cli import run_cli


def main() -> int:
    return run_cli(
        prog="partners",
        settings_factory=PartnersSettings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations="partners:migrations",
    )


if __name__ == "__main__":
    sys.exit(main())
