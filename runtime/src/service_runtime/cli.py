"""The command line every service image runs: `serve` (HTTP + Kafka) and `migrate` (Alembic to head)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence

import structlog
import uvicorn
from fastapi import FastAPI

from service_runtime.clock import SystemClock
from service_runtime.logging import configure_logging
from service_runtime.migrations import revision, upgrade
from service_runtime.production import SampleValuesInProduction
from service_runtime.settings import ServiceSettings

Command = Callable[[argparse.Namespace], int]


def run_cli(
    *,
    prog: str,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings, SystemClock], FastAPI],
    migrations: str,
    extra: Mapping[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse `argv` and run one command."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API, the Kafka consumers and the outbox relay")
    sub.add_parser("migrate", help="migrate the service's schema to the newest revision")
    rev = sub.add_parser("revision", help="developers: autogenerate a migration against a migrated database")
    rev.add_argument("-m", "--message", required=True)
    for name, (help_text, configure, _) in (extra or {}).items():
        configure(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)

    settings = settings_factory()
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "migrate":
        upgrade(settings.database_url.get_secret_value(), migrations)
        return 0
    if args.command == "revision":
        revision(settings.database_url.get_secret_value(), migrations, args.message)
        return 0
    if args.command == "serve":
        try:
            app = app_factory(settings, SystemClock())
        except SampleValuesInProduction as refusal:
            structlog.get_logger(prog).error("refused_to_start", reason=str(refusal))
            return 2
        uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False)
        return 0
    _, _, command = (extra or {})[args.command]
    return command(args)
