"""The figures of one run: a table for people, JSON for machines."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def say(text: str) -> None:
    """A progress line on stderr, with the time of day (stdout carries the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Figure:
    """One measured figure, with the ceiling of the same machine it should be read against."""

    name: str
    value: float
    unit: str
    ceiling: float | None = None
    ceiling_name: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ceiling is None or self.ceiling == 0:
            return None
        return self.value / self.ceiling


@dataclass
class Report:
    parameters: dict[str, Any]
    machine: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks[name] = (ok, detail)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks.values())

    def render(self) -> str:
        lines = ["", "Machine"]
        width = max((len(k) for k in self.machine), default=0)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.machine.items()]
        lines += ["", "Parameters"]
        width = max((len(k) for k in self.parameters), default=0)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.parameters.items()]
        header = ("figure", "value", "unit", "ceiling", "ratio")
        rows = [
            (
                f.name,
                _number(f.value),
                f.unit,
                f"{_number(f.ceiling)} ({f.ceiling_name})" if f.ceiling is not None else "",
                f"{f.ratio:.3f}" if f.ratio is not None else "",
            )
            for f in self.figures
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        aligns = ("<", ">", "<", ">", ">")

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True))

        lines += ["", line(header), "  ".join("-" * w for w in widths)]
        lines += [line(r) for r in rows]
        notes = [f"  {f.name}: {f.note}" for f in self.figures if f.note]
        if notes:
            lines += ["", "Notes", *notes]
        lines += ["", "Correctness"]
        lines += [
            f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}" for name, (ok, detail) in self.checks.items()
        ]
        lines += ["", f"RESULT: {'PASS' if self.passed else 'FAIL'}", ""]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "machine": self.machine,
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
            "checks": {name: {"pass": ok, "detail": detail} for name, (ok, detail) in self.checks.items()},
            "result": "PASS" if self.passed else "FAIL",
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"
