"""Text from outside made safe to store, log and show: control characters found or removed, length bounded."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: Control characters refused in free text (bodies, message fields): C0 except TAB, LF and CR, and
#: DEL. PostgreSQL cannot store NUL in text at all; the others corrupt logs, CSV and terminals.
TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Control characters refused in identifiers, paths, query strings, keys and headers: all of C0 and DEL.
ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: JSON escapes that may stand for a control character (`\u0000`…`\u001f`, `\u007f`). Raw control
#: bytes inside JSON strings are invalid JSON already; this finds the escaped ones cheaply, and
#: only a hit pays for the precise check.
MAYBE_ESCAPED_CONTROL = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u007[fF]")


def visible(text: str, *, limit: int) -> str:
    """`text` with every control character shown as `\\xNN` (line breaks as spaces), cut to `limit` characters."""
    shown = ANY_CONTROL.sub(_escape, text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return " " if char in "\n\r\t" else f"\\x{ord(char):02x}"


def describe_char(char: str) -> str:
    """`U+0000`: how a reason names a character."""
    return f"U+{ord(char):04X}"


def control_in(value: Any, *, path: str = "") -> tuple[str, str] | None:
    """The first (path, character) of a control character in the strings and keys of parsed JSON.

    Iterative, so that no nesting depth can exhaust the stack.
    """
    for where, text, is_key in _strings(value, path):
        found = (ANY_CONTROL if is_key else TEXT_CONTROL).search(text)
        if found is not None:
            return where or "<root>", found.group()
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str, bool]]:
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item, False
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    yield child_path, key, True
                stack.append((child_path, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}.{i}" if where else str(i), child) for i, child in enumerate(item))
