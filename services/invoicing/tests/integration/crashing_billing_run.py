"""A billing run in a process of its own that dies in the middle: `python crashing_billing_run.py URL DATE`.

Run by test_billing_crash.py. With `--die-at-commit N` the process exits with 137 (as if
SIGKILLed) when the N-th database transaction is about to commit: that transaction never
commits, the earlier ones have. Without it, the run completes and prints its report as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from typing import Any

from sqlalchemy import event

from invoicing.billing.service import run_billing
from invoicing.calendar import HELSINKI
from invoicing.prices.loader import sample_price_book
from service_runtime.clock import FixedClock
from service_runtime.database import create_engine, session_factory

KILLED = 137


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("run_date", type=dt.date.fromisoformat)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--die-at-commit", type=int)
    args = parser.parse_args()
    engine = create_engine(args.database_url, pool_size=2)
    commits = 0

    def before_commit(_connection: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == args.die_at_commit:
            print(f"dying before commit {commits}", file=sys.stderr, flush=True)
            os._exit(KILLED)

    event.listen(engine.sync_engine, "commit", before_commit)
    clock = FixedClock(dt.datetime.combine(args.run_date, dt.time(6), tzinfo=HELSINKI))
    try:
        report = await run_billing(
            session_factory(engine),
            clock,
            sample_price_book(),
            args.run_date,
            batch_size=args.batch_size,
            workers=1,  # one worker: the commits come in a known order
        )
    finally:
        await engine.dispose()
    print(json.dumps({"invoices_issued": report.invoices_issued, "already_billed": report.already_billed}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
