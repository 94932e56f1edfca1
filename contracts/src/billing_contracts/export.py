"""Export the contracts as JSON Schema files and one AsyncAPI 3.0 document: `python -m billing_contracts.export`.

The JSON Schemas are generated in pydantic's *validation* mode: they describe what a producer
must send for our consumers to accept it (which fields are required, which may be left out,
every constraint), not merely what our own serialiser happens to emit. The Decimal types are
the one tightening: they are documented as strings only, although a consumer also accepts a
JSON number that is exact within the type's decimals.

Output is deterministic (sorted keys, two-space indent, a trailing newline), so that the
committed files change only when a contract changes; `--check` compares without writing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from billing_contracts.base import Message
from billing_contracts.examples import example_of
from billing_contracts.registry import DEAD_LETTER_CONTRACT, SERVICES, TOPICS, dead_letter_topic

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = "schemas"
ASYNCAPI_FILE = "asyncapi.yaml"
DEAD_LETTER_SCHEMA = f"dead-letter.v{DEAD_LETTER_CONTRACT.version()}"
_KAFKA_BINDING_VERSION = "0.5.0"
_DAY_MS = 24 * 60 * 60 * 1000

#: The `contracts/` folder of a source checkout, where the generated files are committed.
DEFAULT_ROOT = Path(__file__).resolve().parents[2]


def key_description(contract: type[Message]) -> str:
    """What the Kafka key of a contract's messages is."""
    if contract.key_field is not None:
        return f"The `{contract.key_field}` of the message, UTF-8 (the aggregate id; the ordering unit)."
    if contract is DEAD_LETTER_CONTRACT:
        return "`<original_topic>:<original_partition>` of the dead-lettered message, UTF-8."
    raise TypeError(f"{contract.__name__} declares no key_field")


def json_schema(contract: type[Message], *, name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, validation mode) of one contract, self-contained."""
    schema = contract.model_json_schema(mode="validation")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = f"{name}.json"
    schema["x-message-type"] = contract.message_type
    schema["x-kafka-key"] = key_description(contract)
    return schema


def _dump_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_files() -> dict[str, str]:
    """Every JSON Schema file by its path below the contracts folder: one per topic, one dead letter."""
    files = {
        f"{SCHEMA_DIR}/{spec.name}.json": _dump_json(json_schema(spec.contract, name=spec.name))
        for spec in TOPICS
    }
    files[f"{SCHEMA_DIR}/{DEAD_LETTER_SCHEMA}.json"] = _dump_json(
        json_schema(DEAD_LETTER_CONTRACT, name=DEAD_LETTER_SCHEMA)
    )
    return files


_INFO_DESCRIPTION = """\
The Kafka topics of the Procountor billing backbone: metering, invoicing, partners and
procountor-sync, and the systems that publish to them.

* Topics are named `<domain>.<event>.v<N>`; each carries exactly one contract, whose class name
  ends in the same version (`InvoiceIssuedV1` on `invoicing.invoice-issued.v1`).
* The Kafka key is the id of the aggregate the message is about (the environment id for usage
  and contract commands); all messages about one aggregate go to one partition, in order.
* Every message is a UTF-8 JSON object with the envelope `event_id` (UUID, the idempotency key:
  a consumer applies an event id at most once), `occurred_at` (an RFC 3339 timestamp with an
  offset; naive timestamps are rejected) and `producer`.
* Money, unit prices and quantities are JSON strings (`"19.90"`), never floats.
* Unknown fields are ignored. Adding an optional field keeps the version; any other change is a
  new contract class `…V<N+1>` on a new topic `….v<N+1>`.
* A message a consumer cannot process (not JSON, not the contract, or refused by a rule that no
  retry can change) is published with the reason to the consumer's dead-letter topic
  `<service>.dead-letter.v1` as a `DeadLetterV1`, and the partition moves on.
"""


def _component_name(contract: type[Message]) -> str:
    return contract.__name__


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic in the registry, dead-letter topics included."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_schema(contract: type[Message]) -> None:
        schema = contract.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            if schemas.setdefault(def_name, definition) != definition:
                raise ValueError(f"two different schemas are both named {def_name}")
        schemas[_component_name(contract)] = schema

    def add_message(contract: type[Message]) -> None:
        doc = (contract.__doc__ or "").strip()
        messages[_component_name(contract)] = {
            "name": contract.message_type,
            "title": _component_name(contract),
            "summary": doc.splitlines()[0],
            "description": doc,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{_component_name(contract)}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": key_description(contract)},
                    "bindingVersion": _KAFKA_BINDING_VERSION,
                }
            },
            "examples": [{"name": "example", "payload": example_of(contract).model_dump(mode="json")}],
        }

    def add_channel(
        topic: str,
        contract: type[Message],
        *,
        description: str,
        producers: Sequence[str],
        consumers: Sequence[str],
        partitions: int | None = None,
        retention_days: int | None = None,
    ) -> None:
        kafka: dict[str, Any] = {"topic": topic, "bindingVersion": _KAFKA_BINDING_VERSION}
        if partitions is not None:
            kafka["partitions"] = partitions
        if retention_days is not None:
            kafka["topicConfiguration"] = {
                "cleanup.policy": ["delete"],
                "retention.ms": retention_days * _DAY_MS,
            }
        name = _component_name(contract)
        channels[topic] = {
            "address": topic,
            "description": description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": kafka},
        }
        for action, parties in (("send", producers), ("receive", consumers)):
            for service in parties:
                operations[f"{service}.{action}.{topic}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{topic}"},
                    "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"}],
                    "summary": f"{service} {'publishes' if action == 'send' else 'consumes'} {name}.",
                }

    for spec in TOPICS:
        add_schema(spec.contract)
        add_message(spec.contract)
        add_channel(
            spec.name,
            spec.contract,
            description=spec.description,
            producers=spec.producers,
            consumers=spec.consumers,
            partitions=spec.partitions,
            retention_days=spec.retention_days,
        )
    add_schema(DEAD_LETTER_CONTRACT)
    add_message(DEAD_LETTER_CONTRACT)
    for service in SERVICES:
        add_channel(
            dead_letter_topic(service),
            DEAD_LETTER_CONTRACT,
            description=f"Messages {service} could not process, with the reason.",
            producers=(service,),
            consumers=(),
        )

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Procountor billing backbone",
            "version": metadata.version("billing-contracts"),
            "description": _INFO_DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _dump_yaml(document: dict[str, Any]) -> str:
    text = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100)
    return f"# Generated by `python -m billing_contracts.export`; do not edit.\n{text}"


def expected_files() -> dict[str, str]:
    """Every generated file by its path below the contracts folder, with its exact content."""
    files = schema_files()
    files[ASYNCAPI_FILE] = _dump_yaml(asyncapi_document())
    return files


def drift(root: Path) -> list[str]:
    """How the files under `root` differ from what the contracts generate; empty when in sync."""
    expected = expected_files()
    problems = []
    for path, content in sorted(expected.items()):
        target = root / path
        if not target.exists():
            problems.append(f"missing: {path}")
        elif target.read_text(encoding="utf-8") != content:
            problems.append(f"drifted: {path}")
    for extra in sorted((root / SCHEMA_DIR).glob("*.json")):
        relative = extra.relative_to(root).as_posix()
        if relative not in expected:
            problems.append(f"extra: {relative}")
    return problems


def write(root: Path) -> list[str]:
    """Write every generated file under `root` and remove stale schema files; the paths changed."""
    changed = drift(root)
    expected = expected_files()
    (root / SCHEMA_DIR).mkdir(parents=True, exist_ok=True)
    for extra in (root / SCHEMA_DIR).glob("*.json"):
        if extra.relative_to(root).as_posix() not in expected:
            extra.unlink()
    for path, content in expected.items():
        target = root / path
        if not target.exists() or target.read_text(encoding="utf-8") != content:
            target.write_text(content, encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the files, or with `--check` report drift and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m billing_contracts.export", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing drifted, missing and extra files"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"contracts folder (default {DEFAULT_ROOT})"
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.check:
        problems = drift(root)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("contracts changed: run `make contracts` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(expected_files())} contract files are up to date")
        return 0
    for path in write(root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
