"""Every topic the registry says procountor-sync consumes is subscribed, and every one it produces is published."""

from __future__ import annotations

import ast
from pathlib import Path

from billing_contracts.registry import TOPICS, consumed_by
from billing_contracts.usage import HourEntryRecordedV1
from procountor_sync.consumers import DELIVERED

SOURCE = Path(__file__).parents[2] / "src" / "procountor_sync"


def test_procountor_sync_subscribes_to_every_topic_the_registry_gives_it() -> None:
    subscribed = {*DELIVERED, HourEntryRecordedV1}

    assert {spec.contract for spec in consumed_by("procountor-sync")} == subscribed


def test_procountor_sync_builds_every_message_the_registry_says_it_produces() -> None:
    built = {
        node.func.id
        for path in SOURCE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    produced = {spec.contract.__name__ for spec in TOPICS if "procountor-sync" in spec.producers}

    assert produced <= built, produced - built
