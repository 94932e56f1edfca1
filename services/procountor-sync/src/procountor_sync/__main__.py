"""`procountor-sync serve | migrate | deliveries … | export-invoices | export-payroll`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

from procountor_sync.app import create_app
from procountor_sync.settings import ProcountorSyncSettings
from service_runtime.cli import TOKEN_VARIABLE, run_cli

DEFAULT_URL = "http://127.0.0.1:8080"


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="procountor-sync's HTTP API")
    parser.add_argument(
        "--token", help=f"your access token (default: ${TOKEN_VARIABLE}); the audit records its subject"
    )


def _client(args: argparse.Namespace, *, timeout: float) -> httpx.Client:
    """The API with the operator's bearer token (issue 12): requeues and cancels are audited by it."""
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise SystemExit(f"no access token: pass --token or set {TOKEN_VARIABLE}")
    return httpx.Client(base_url=args.url, timeout=timeout, headers={"Authorization": f"Bearer {token}"})


def _configure_deliveries(parser: argparse.ArgumentParser) -> None:
    _url(parser)
    parser.add_argument("action", choices=("list", "summary", "requeue", "cancel", "actions"))
    parser.add_argument(
        "delivery_id", nargs="?", help="for requeue, cancel and actions, e.g. invoice:INV-100001"
    )
    parser.add_argument("--status", help="list: only this status (pending, refused, awaiting_approval, …)")
    parser.add_argument("--after", help="list: the last delivery id of the previous page")
    parser.add_argument("--limit", type=int, default=100, help="list: at most this many")
    parser.add_argument("--reason", help="requeue, cancel: why (kept in the delivery's actions)")


def deliveries(args: argparse.Namespace) -> int:
    """Operators' deliveries: list, summary, requeue, cancel, actions (over the service's API)."""
    with _client(args, timeout=30) as http:
        if args.action == "list":
            params = {"limit": str(args.limit)} | {
                k: v for k, v in (("status", args.status), ("after", args.after)) if v
            }
            response = http.get("/deliveries", params=params)
        elif args.action == "summary":
            response = http.get("/deliveries/summary")
        elif not args.delivery_id:
            print("a delivery id is needed", file=sys.stderr)
            return 2
        elif args.action == "actions":
            response = http.get(f"/deliveries/{args.delivery_id}/actions")
        else:
            body = {"reason": args.reason} if args.reason else {}
            response = http.post(f"/deliveries/{args.delivery_id}/{args.action}", json=body)
    print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    return 0 if response.is_success else 1


def _configure_export(parser: argparse.ArgumentParser) -> None:
    _url(parser)
    parser.add_argument("--period", required=True, help="YYYY-MM")
    parser.add_argument("--out", type=Path, required=True, help="where to write the CSV")


def _export(path: str, params: dict[str, str], out: Path, args: argparse.Namespace) -> int:
    with _client(args, timeout=120) as http:
        response = http.get(path, params=params)
    if not response.is_success:
        print(response.text, file=sys.stderr)
        return 1
    out.write_bytes(response.content)
    print(f"wrote {out} ({len(response.content)} bytes)")
    return 0


def _configure_invoice_export(parser: argparse.ArgumentParser) -> None:
    _configure_export(parser)
    parser.add_argument("--all-payers", action="store_true", help="every payer, not only the file payers")


def export_invoices(args: argparse.Namespace) -> int:
    """I-05: invoices of a billing period as Procountor's invoice import file."""
    params = {"period": args.period, "all_payers": "true" if args.all_payers else "false"}
    return _export("/transfer-files/invoices", params, args.out, args)


def export_payroll(args: argparse.Namespace) -> int:
    """I-04: a month's hour entries as Procountor's salary data import file."""
    return _export("/transfer-files/payroll", {"period": args.period}, args.out, args)


def main() -> int:
    return run_cli(
        prog="procountor-sync",
        settings_factory=ProcountorSyncSettings,
        app_factory=create_app,  # type: ignore[arg-type]
        migrations="procountor_sync:migrations",
        extra={
            "deliveries": (
                "operators: list, requeue or cancel deliveries",
                _configure_deliveries,
                deliveries,
            ),
            "export-invoices": (
                "I-05: the invoice import file of a period",
                _configure_invoice_export,
                export_invoices,
            ),
            "export-payroll": ("I-04: the payroll import file of a month", _configure_export, export_payroll),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
