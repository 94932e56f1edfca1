"""The overlays rendered once per test module by `kubectl kustomize` (offline), with lookups by kind."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
OVERLAYS = ("dev", "prod")

Manifest = dict[str, Any]


class Rendered:
    """One overlay rendered by `kubectl kustomize`, with lookups by kind."""

    def __init__(self, overlay: str, objects: list[Manifest]) -> None:
        self.overlay = overlay
        self.objects = objects

    def of_kind(self, kind: str) -> list[Manifest]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> Manifest:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{self.overlay}: expected one {kind}/{name}, got {len(matches)}"
        return matches[0]


def render(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    overlay: str = request.param
    return Rendered(overlay, render(DEPLOY / "overlays" / overlay))
