"""Warnings that repeat while something stays broken (a database outage), logged at most once a minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog


class RateLimitedLog:
    """Logs a repeating failure when it starts, then at most once per `every_s` with how often it recurred.

    During a nine-minute database outage a consumer retries its batch every second: one full
    traceback per retry filled megabytes of log and hid everything else. The first occurrence
    keeps its traceback; the repeats are counted into the next line (`repeated`), and `recovered`
    says when it is over.
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        every_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger if logger is not None else structlog.get_logger(__name__)
        self._every_s = every_s
        self._monotonic = monotonic
        # event → (time last logged, repeats not logged since)
        self._state: dict[str, tuple[float, int]] = {}

    def warning(self, event: str, *, exc_info: bool = False, **fields: Any) -> bool:
        """Log `event` unless it was logged less than `every_s` ago; True when it was logged."""
        now = self._monotonic()
        state = self._state.get(event)
        if state is not None and now - state[0] < self._every_s:
            self._state[event] = (state[0], state[1] + 1)
            return False
        repeated = state[1] if state is not None else 0
        self._state[event] = (now, 0)
        if state is None:
            self._log.warning(event, exc_info=exc_info, **fields)
        else:
            # The traceback was logged when the failure started; the repeats say it goes on.
            self._log.warning(event, repeated=repeated, still_failing=True, **fields)
        return True

    def recovered(self, event: str, **fields: Any) -> None:
        """The failure behind `event` is over: say so once, and log the next one at once."""
        state = self._state.pop(event, None)
        if state is not None:
            self._log.info(f"{event}_recovered", repeated=state[1], **fields)
