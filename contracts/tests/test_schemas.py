"""The committed JSON Schemas and AsyncAPI document are the reviewed contracts; nothing changes unnoticed."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing_contracts import export
from billing_contracts.base import Message
from billing_contracts.registry import DEAD_LETTER_CONTRACT, TOPICS

CONTRACTS_DIR = Path(__file__).resolve().parents[1]
REGENERATE = (
    "run `make contracts` (uv run python -m billing_contracts.export), review the diff and commit "
    "contracts/schemas and contracts/asyncapi.yaml; only an added optional field keeps the version, "
    "any other change needs a new contract class …V<N+1> on a new topic"
)

SCHEMAS = [(spec.name, spec.contract) for spec in TOPICS] + [
    (export.DEAD_LETTER_SCHEMA, DEAD_LETTER_CONTRACT)
]


def _ids(item: tuple[str, type[Message]]) -> str:
    return item[0]


@pytest.mark.parametrize("item", SCHEMAS, ids=_ids)
def test_every_contract_matches_its_committed_schema_snapshot(item: tuple[str, type[Message]]) -> None:
    name, contract = item
    path = CONTRACTS_DIR / export.SCHEMA_DIR / f"{name}.json"
    assert path.exists(), f"{path} is missing: {REGENERATE}"
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert export.json_schema(contract, name=name) == committed, (
        f"the schema of {contract.__name__} differs from {path.name}: {REGENERATE}"
    )


def test_the_export_check_finds_no_drift() -> None:
    assert export.drift(CONTRACTS_DIR) == [], REGENERATE
    assert export.main(["--check", "--root", str(CONTRACTS_DIR)]) == 0


def test_the_export_check_lists_drifted_missing_and_extra_files_without_writing(tmp_path: Path) -> None:
    export.write(tmp_path)
    first = next(iter(sorted((tmp_path / export.SCHEMA_DIR).glob("*.json"))))
    first.write_text("{}\n", encoding="utf-8")
    (tmp_path / export.ASYNCAPI_FILE).unlink()
    (tmp_path / export.SCHEMA_DIR / "usage.retired-event.v1.json").write_text("{}\n", encoding="utf-8")

    assert export.main(["--check", "--root", str(tmp_path)]) == 1
    assert export.drift(tmp_path) == [
        "missing: asyncapi.yaml",
        f"drifted: {export.SCHEMA_DIR}/{first.name}",
        f"extra: {export.SCHEMA_DIR}/usage.retired-event.v1.json",
    ]
    assert first.read_text(encoding="utf-8") == "{}\n"


def test_the_export_writes_deterministic_files_that_then_check_clean(tmp_path: Path) -> None:
    assert export.main(["--root", str(tmp_path)]) == 0
    first = {p: p.read_text(encoding="utf-8") for p in sorted(tmp_path.rglob("*.*"))}
    assert export.main(["--root", str(tmp_path)]) == 0
    assert {p: p.read_text(encoding="utf-8") for p in sorted(tmp_path.rglob("*.*"))} == first
    assert all(text.endswith("\n") for text in first.values())
    assert export.drift(tmp_path) == []


def _properties(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{where}.{name}", prop
    for def_name, definition in schema.get("$defs", {}).items():
        yield from _properties(definition, f"{where}.$defs.{def_name}")


@pytest.mark.parametrize("item", SCHEMAS, ids=_ids)
def test_every_field_of_every_contract_has_a_description(item: tuple[str, type[Message]]) -> None:
    name, contract = item
    schema = export.json_schema(contract, name=name)
    undocumented = [path for path, prop in _properties(schema, name) if not prop.get("description")]
    assert undocumented == []


@pytest.mark.parametrize("item", SCHEMAS, ids=_ids)
def test_every_contract_and_nested_type_has_a_docstring(item: tuple[str, type[Message]]) -> None:
    name, contract = item
    assert (contract.__doc__ or "").strip(), f"{contract.__name__} has no docstring"
    schema = export.json_schema(contract, name=name)
    for def_name, definition in schema.get("$defs", {}).items():
        assert definition.get("description"), f"{def_name} has no docstring"


@pytest.mark.parametrize("item", SCHEMAS, ids=_ids)
def test_every_decimal_amount_is_documented_as_a_string(item: tuple[str, type[Message]]) -> None:
    name, contract = item
    text = json.dumps(export.json_schema(contract, name=name))
    assert '"type": "number"' not in text


def test_the_asyncapi_document_has_a_channel_per_topic_with_kafka_key_and_payload() -> None:
    document = yaml.safe_load((CONTRACTS_DIR / export.ASYNCAPI_FILE).read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    assert "dead-letter" in document["info"]["description"]
    for spec in TOPICS:
        channel = document["channels"][spec.name]
        assert channel["address"] == spec.name
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        message = document["components"]["messages"][spec.contract.__name__]
        assert message["payload"] == {"$ref": f"#/components/schemas/{spec.contract.__name__}"}
        assert spec.contract.key_field in message["bindings"]["kafka"]["key"]["description"]
    for service in ("metering", "invoicing", "partners", "procountor-sync"):
        assert f"{service}.dead-letter.v1" in document["channels"]


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    document = yaml.safe_load((CONTRACTS_DIR / export.ASYNCAPI_FILE).read_text(encoding="utf-8"))

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(document)):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]
