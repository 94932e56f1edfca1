"""The command line every service image runs: `serve`, `migrate`, and the operators' `dead-letters` tools."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
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
    add_dead_letter_commands(sub)
    for name, (help_text, configure, _) in (extra or {}).items():
        configure(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)

    settings = settings_factory()
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "dead-letters":
        return dead_letters_command(args, default_url=f"http://127.0.0.1:{settings.http_port}")
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


# --- operators' tools over the service's own API ---------------------------------------------------

#: Where the CLI finds the operator's access token: the API audits its subject, never a typed name.
TOKEN_VARIABLE = "BILLING_TOKEN"  # noqa: S105  # the name of a variable, not a secret


class ApiCommandError(RuntimeError):
    """The API refused or did not answer; the message is for the operator."""


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """`--url` of the service and `--token` (default: $BILLING_TOKEN), for commands that call its API."""
    parser.add_argument(
        "--url", help="the service's base URL (default: this pod, http://127.0.0.1:<HTTP_PORT>)"
    )
    parser.add_argument(
        "--token", help=f"an access token of yours (default: ${TOKEN_VARIABLE}); its subject is audited"
    )


def call_api(args: argparse.Namespace, method: str, path: str, *, default_url: str, **kwargs: Any) -> Any:
    """One call of the service's API with the operator's bearer token; the JSON answer, or ApiCommandError."""
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise ApiCommandError(
            f"no access token: pass --token or set {TOKEN_VARIABLE} "
            "(locally: uv run python -m devstack.issuer olli.operator --issuer <issuer URL>)"
        )
    url = (args.url or default_url).rstrip("/")
    try:
        response = httpx.request(
            method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs
        )
    except httpx.HTTPError as exc:
        raise ApiCommandError(f"{url} did not answer: {type(exc).__name__}") from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiCommandError(f"HTTP {response.status_code}: {detail}")
    return response.json()


def add_dead_letter_commands(sub: Any) -> None:
    parser = sub.add_parser("dead-letters", help="list, show, replay or discard this service's dead letters")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters, oldest first, a page at a time")
    listing.add_argument("--topic")
    listing.add_argument("--status", choices=("new", "replayed", "discarded"), default="new")
    listing.add_argument("--group", help="consumer group")
    listing.add_argument("--failure", choices=("malformed", "schema_violation", "rejected"))
    listing.add_argument("--after", type=int, help="the `next page after` id the last page printed")
    listing.add_argument("--limit", type=int, default=50)
    show = actions.add_parser("show", help="one dead letter: the original message, why, what was done")
    show.add_argument("id", type=int)
    replay = actions.add_parser("replay", help="run it through its consumer again, after the fix")
    replay.add_argument("id", type=int)
    discard = actions.add_parser("discard", help="give up on it, with the reason")
    discard.add_argument("id", type=int)
    discard.add_argument("--reason", required=True)
    for action in (listing, show, replay, discard):
        add_api_arguments(action)
        action.add_argument("--json", action="store_true", help="print the API's JSON answer")


def dead_letters_command(args: argparse.Namespace, *, default_url: str) -> int:
    """`<service> dead-letters …`: exit 0 when done, 1 when the API refused (the reason on stderr)."""
    try:
        if args.action == "list":
            params = {
                k: v
                for k, v in {
                    "topic": args.topic,
                    "status": args.status,
                    "consumer_group": args.group,
                    "failure": args.failure,
                    "after": args.after,
                    "limit": args.limit,
                }.items()
                if v is not None
            }
            answer = call_api(args, "GET", "/dead-letters", default_url=default_url, params=params)
            if args.json:
                print(json.dumps(answer, indent=2))
            else:
                _print_page(answer)
            return 0
        if args.action == "show":
            answer = call_api(args, "GET", f"/dead-letters/{args.id}", default_url=default_url)
        elif args.action == "replay":
            answer = call_api(args, "POST", f"/dead-letters/{args.id}/replay", default_url=default_url)
        else:
            answer = call_api(
                args,
                "POST",
                f"/dead-letters/{args.id}/discard",
                default_url=default_url,
                json={"reason": args.reason},
            )
    except ApiCommandError as exc:
        print(f"{args.action} failed: {exc}", file=sys.stderr)
        return 1
    if args.json or args.action == "show":
        print(json.dumps(answer, indent=2))
    else:
        print(
            f"dead letter {answer['id']}: {answer['status']} by {answer['resolved_by']} at {answer['resolved_at']}"
        )
    return 0


def _print_page(page: dict[str, Any]) -> None:
    items = page.get("items", [])
    for letter in items:
        print(
            f"{letter['id']:>8}  {letter['status']:<9} {letter['created_at'][:19]}  {letter['topic']}"
            f"[{letter['partition']}]@{letter['offset']}  {letter['failure']}: {letter['reason'][:100]}"
        )
    if not items:
        print("no dead letters")
    if page.get("next_after") is not None:
        print(f"more: --after {page['next_after']}")
