"""structlog set-up: JSON lines in pods, readable output on a terminal, the same for library logs.

Our own logs and those of uvicorn, aiokafka, FastStream, SQLAlchemy and Alembic (standard
`logging`) go through one renderer, so a pod writes nothing but JSON lines. Context bound with
`structlog.contextvars` (the request id of an HTTP request, the message id of a consumed message)
appears in every line written while it is bound, library lines included.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import structlog


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of writing (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on the current `sys.stderr`, not the one of the moment it was made."""

    def __init__(self) -> None:
        super().__init__(_CurrentStderr())


#: Libraries whose INFO is noise for operators; their warnings and errors still show.
QUIET_LOGGERS = ("aiokafka", "faststream", "uvicorn.access", "httpx", "httpcore")


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the standard library once, in the composition root."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if json_output
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # Standard-library records (uvicorn, aiokafka, alembic, …) through the same processors and renderer.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _drop_color_message,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json_output else []),
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        # uvicorn and alembic may have installed handlers of their own: ours is the one.
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _drop_color_message(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    # uvicorn passes a second, ANSI-coloured copy of its message as an extra field.
    event.pop("color_message", None)
    return event


@contextlib.contextmanager
def bound_message(*, message_id: str, topic: str | None = None) -> Iterator[None]:
    """Bind a consumed message's id (and topic) to every log line written inside (the consumer, a replay)."""
    values = {"message_id": message_id} | ({"topic": topic} if topic else {})
    with structlog.contextvars.bound_contextvars(**values):
        yield
