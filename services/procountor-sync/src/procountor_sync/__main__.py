"""`procountor_sync serve | migrate`."""

from __future__ import annotations

import sys

from procountor_sync.app import create_app
from procountor_sync.settings import ProcountorSyncSettings
from service_runtime.cli import run_cli


def main() -> int:
    return run_cli(
        prog="procountor-sync",
        settings_factory=ProcountorSyncSettings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations="procountor_sync:migrations",
    )


if __name__ == "__main__":
    sys.exit(main())
