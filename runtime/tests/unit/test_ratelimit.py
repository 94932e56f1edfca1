"""RateLimitedLog: a failure that repeats during an outage is logged when it starts, then once a minute."""

from __future__ import annotations

from typing import Any

from service_runtime.ratelimit import RateLimitedLog


class Lines:
    """A logger of our own that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))


class Monotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_retried_every_second_for_nine_minutes_logs_ten_lines_not_540() -> None:
    lines, clock = Lines(), Monotonic()
    log = RateLimitedLog(lines, every_s=60.0, monotonic=clock)

    logged = 0
    for second in range(540):
        clock.now = float(second)
        logged += log.warning("batch_will_be_redelivered", exc_info=True, group="metering")

    assert logged == 9
    first, *repeats = lines.lines
    assert first == ("warning", "batch_will_be_redelivered", {"exc_info": True, "group": "metering"})
    assert all(fields["repeated"] == 59 and fields["still_failing"] for _, _, fields in repeats)
    assert all("exc_info" not in fields for _, _, fields in repeats)


def test_recovery_is_said_once_and_the_next_failure_is_logged_at_once_with_its_traceback() -> None:
    lines, clock = Lines(), Monotonic()
    log = RateLimitedLog(lines, every_s=60.0, monotonic=clock)
    log.warning("outbox_relay_failed", exc_info=True)
    clock.now = 1.0
    log.warning("outbox_relay_failed", exc_info=True)

    log.recovered("outbox_relay_failed")
    log.recovered("outbox_relay_failed")
    clock.now = 2.0
    log.warning("outbox_relay_failed", exc_info=True)

    assert [(level, event) for level, event, _ in lines.lines] == [
        ("warning", "outbox_relay_failed"),
        ("info", "outbox_relay_failed_recovered"),
        ("warning", "outbox_relay_failed"),
    ]
    assert lines.lines[1][2] == {"repeated": 1}
    assert lines.lines[2][2] == {"exc_info": True}
