"""Metering's usage consumer in a process of its own, under a consumer group of its own, that can die after a commit.

Run by test_crash_recovery.py: `python crashing_consumer.py --group G --now ISO [--crash-on-environment ENV]`,
with `METERING_*` settings in the environment. With `--crash-on-environment` the process exits with
137 (as if SIGKILLed) right after the first database transaction that applied an event of that
environment committed, before FastStream commits the batch's offsets. On SIGTERM it stops
gracefully and prints one line to stdout: `summary {"consumed": …, "duplicates": …}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import Message
from billing_contracts.registry import topic_for
from metering.consumers import USAGE_CONTRACTS, UsageEventIntake
from metering.settings import MeteringSettings
from metering.tables import runtime_tables
from service_runtime.clock import FixedClock
from service_runtime.consumer import Rejection
from service_runtime.host import ServiceHost
from service_runtime.logging import configure_logging
from service_runtime.metrics import ServiceMetrics

KILLED = 137


class DieAfterCommit:
    """Metering's use case, plus a kill switch that fires once the transaction it ran in has committed."""

    def __init__(self, recorder: UsageEventIntake, *, environment_id: str | None) -> None:
        self._recorder = recorder
        self._environment_id = environment_id

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        rejections = await self._recorder(session, events)
        if self._environment_id is not None and any(
            getattr(e, "environment_id", None) == self._environment_id for e in events
        ):
            event.listen(session.sync_session, "after_commit", _die, once=True)
        return rejections


def _die(_session: Any) -> None:
    print(f"killed after commit at {datetime.now(UTC).isoformat()}", file=sys.stderr, flush=True)
    os._exit(KILLED)


def _summary(metrics: ServiceMetrics) -> dict[str, float]:
    totals = {"consumed": 0.0, "duplicates": 0.0}
    names = {"messages_consumed_total": "consumed", "messages_duplicate_total": "duplicates"}
    for metric in metrics.registry.collect():
        for sample in metric.samples:
            if sample.name in names:
                totals[names[sample.name]] += sample.value
    return totals


async def serve(settings: MeteringSettings, clock: FixedClock, *, group: str, crash_on: str | None) -> None:
    host = ServiceHost(name="metering", settings=settings, clock=clock, tables=runtime_tables)
    use_case = DieAfterCommit(UsageEventIntake(clock), environment_id=crash_on)
    host.consume({topic_for(c): c for c in USAGE_CONTRACTS}, use_case, group=group)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await host.start()
    try:
        await stop.wait()
    finally:
        await host.stop()
    print("summary " + json.dumps(_summary(host.metrics)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--group", required=True, help="Consumer group.")
    parser.add_argument("--now", required=True, type=datetime.fromisoformat, help="Time of the fixed clock.")
    parser.add_argument("--crash-on-environment", default=None, help="Die after committing its first batch.")
    args = parser.parse_args()
    settings = MeteringSettings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(serve(settings, FixedClock(args.now), group=args.group, crash_on=args.crash_on_environment))


if __name__ == "__main__":
    main()
