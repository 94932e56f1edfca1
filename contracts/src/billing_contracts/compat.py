"""Consumer compatibility of the contracts against the last released ones: `python -m billing_contracts.compat`.

The released baseline is `contracts/released/schemas.json`: the JSON Schema of every topic as
the last published wheel had it, with that version. `--check` (in `make test`) compares today's
schemas with it; `--release` (run when a new version of the wheel is cut) refuses a breaking
change and otherwise writes the new baseline.

What "compatible" means, per topic, in the words of JSON Schema (validation mode, which says
what a consumer accepts):

* every reader must accept what every writer sends; a writer sends only the properties its
  schema declares, and a reader ignores properties it does not know (unless its schema forbids
  extra properties);
* commands published only by other systems and consumed by us: the new schema (our consumers)
  must accept everything the released one allowed, because publishers upgrade after us;
* topics we publish (events, dead letters): both directions, because consumers on the released
  schema read our new messages, and consumers on the new schema re-read old messages still in
  the topic.

So adding an optional field or a new topic is fine; removing or renaming a field, adding a
required one, changing a type or a format, narrowing a length, a pattern or a range, or (on a
topic we publish) adding an enum value is a breaking change and needs a new topic version
(`….v2`, a new contract class `…V2`). Removing a released topic fails too: retire it in a
release that says so (see contracts/CHANGELOG.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billing_contracts.export import DEFAULT_ROOT, expected_files
from billing_contracts.registry import SERVICES, TOPICS, dead_letter_topic

BASELINE = Path("released") / "schemas.json"
CHANGELOG = "CHANGELOG.md"

#: Keywords that say nothing about which documents are valid.
_ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "examples",
        "default",
        "$id",
        "$schema",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
#: Keywords the check understands.
_UNDERSTOOD = frozenset(
    {
        "type",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "formatMinimum",
        "formatMaximum",
    }
)


@dataclass(frozen=True)
class Problem:
    """One way a consumer could break: on which topic, where in the message, and what."""

    topic: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.where or '<message>'}: {self.what}"


class _Pair:
    """A writer schema and a reader schema with their own `$defs` for resolving references."""

    def __init__(self, writer_root: Mapping[str, Any], reader_root: Mapping[str, Any]) -> None:
        self.writer_root = writer_root
        self.reader_root = reader_root
        self._seen: set[tuple[int, int]] = set()

    @staticmethod
    def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/$defs/"):
                raise ValueError(f"unsupported reference {ref}")
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**root["$defs"][ref.removeprefix("#/$defs/")], **siblings}
        return schema

    def covers(self, reader: Mapping[str, Any], writer: Mapping[str, Any], where: str) -> list[str]:
        """Problems that would make `reader` refuse something `writer` allows (empty: none)."""
        r = self._resolve(reader, self.reader_root)
        w = self._resolve(writer, self.writer_root)
        key = (id(r), id(w))
        if key in self._seen:
            return []  # a recursive structure already being compared
        self._seen.add(key)
        try:
            return self._covers(r, w, where)
        finally:
            self._seen.discard(key)

    def _covers(self, r: Mapping[str, Any], w: Mapping[str, Any], where: str) -> list[str]:
        if "anyOf" in w:
            return [p for branch in w["anyOf"] for p in self.covers(r, branch, where)]
        if "anyOf" in r:
            attempts = [self.covers(branch, w, where) for branch in r["anyOf"]]
            return [] if any(not a for a in attempts) else min(attempts, key=len)
        unknown = sorted(
            k for k in r if k not in _UNDERSTOOD and k not in _ANNOTATIONS and not k.startswith("x-")
        )
        problems = [f"{where}: keyword {k!r} cannot be checked" for k in unknown if r[k] != w.get(k)]
        if "enum" in w or "const" in w:
            values = w.get("enum", [w.get("const")])
            return problems + [
                f"{where}: the value {v!r} is no longer accepted"
                for v in values
                if not _accepts(r, v, self.reader_root)
            ]
        problems += self._types(r, w, where)
        if "enum" in r or "const" in r:
            problems.append(f"{where}: now limited to {r.get('enum', [r.get('const')])}")
        problems += _bounds(r, w, where)
        if "pattern" in r and r["pattern"] != w.get("pattern"):
            problems.append(f"{where}: pattern {r['pattern']!r} added or changed")
        if "format" in r and r["format"] != w.get("format"):
            problems.append(f"{where}: format {r['format']!r} added or changed")
        if "items" in r:
            problems += self.covers(r["items"], w.get("items", {}), f"{where}[]")
        if "properties" in r or "required" in r or "properties" in w:
            problems += self._objects(r, w, where)
        return problems

    @staticmethod
    def _types(r: Mapping[str, Any], w: Mapping[str, Any], where: str) -> list[str]:
        if "type" not in r:
            return []
        reader = set(r["type"]) if isinstance(r["type"], list) else {r["type"]}
        if "type" not in w:
            return [f"{where}: type {sorted(reader)} required where anything was allowed"]
        writer = set(w["type"]) if isinstance(w["type"], list) else {w["type"]}
        if "number" in reader:
            reader.add("integer")
        missing = sorted(writer - reader)
        return [f"{where}: type {t!r} no longer accepted" for t in missing]

    def _objects(self, r: Mapping[str, Any], w: Mapping[str, Any], where: str) -> list[str]:
        problems = []
        r_props, w_props = r.get("properties", {}), w.get("properties", {})
        w_required = set(w.get("required", []))
        for name in r.get("required", []):
            if name not in w_required:
                problems.append(f"{where}.{name}: required now, but could be left out")
        for name, schema in r_props.items():
            if name in w_props:
                problems += self.covers(schema, w_props[name], f"{where}.{name}")
        extra = r.get("additionalProperties", True)
        for name, schema in w_props.items():
            if name in r_props:
                continue
            if extra is False:
                problems.append(f"{where}.{name}: no longer accepted (extra properties are forbidden)")
            elif isinstance(extra, Mapping):
                problems += self.covers(extra, schema, f"{where}.{name}")
        return problems


def _bounds(r: Mapping[str, Any], w: Mapping[str, Any], where: str) -> list[str]:
    """Limits the reader sets that the writer does not keep within (a missing limit is no limit)."""
    problems = []
    for key in ("maxLength", "maxItems", "maximum", "exclusiveMaximum"):
        if key in r and (w.get(key) is None or w[key] > r[key]):
            problems.append(f"{where}: {key} {w.get(key)} narrowed to {r[key]}")
    for key in ("minLength", "minItems"):
        if key in r and w.get(key, 0) < r[key]:
            problems.append(f"{where}: {key} {w.get(key)} narrowed to {r[key]}")
    for key in ("minimum", "exclusiveMinimum"):
        if key in r and (w.get(key) is None or w[key] < r[key]):
            problems.append(f"{where}: {key} {w.get(key)} narrowed to {r[key]}")
    # ISO 8601 dates and UTC timestamps of one shape order as text.
    if "formatMaximum" in r and (w.get("formatMaximum") is None or w["formatMaximum"] > r["formatMaximum"]):
        problems.append(f"{where}: formatMaximum {w.get('formatMaximum')} narrowed to {r['formatMaximum']}")
    if "formatMinimum" in r and (w.get("formatMinimum") is None or w["formatMinimum"] < r["formatMinimum"]):
        problems.append(f"{where}: formatMinimum {w.get('formatMinimum')} narrowed to {r['formatMinimum']}")
    return problems


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _accepts(schema: Mapping[str, Any], value: Any, root: Mapping[str, Any]) -> bool:
    """Whether `schema` accepts one literal value (enough for enum and const values)."""
    schema = _Pair._resolve(schema, root)
    if "anyOf" in schema:
        return any(_accepts(branch, value, root) for branch in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(
            isinstance(value, _JSON_TYPES[t]) and not (t != "boolean" and isinstance(value, bool))
            for t in types
        ):
            return False
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
    return True


def topic_directions() -> dict[str, str]:
    """`consumed` for commands only other systems publish, `both` for topics we publish."""
    directions = {
        spec.name: ("consumed" if set(spec.producers) <= {"external"} else "both") for spec in TOPICS
    }
    directions |= {dead_letter_topic(service): "both" for service in SERVICES}
    return directions


def current_schemas() -> dict[str, dict[str, Any]]:
    """Today's JSON Schema of every topic, by topic name."""
    schemas: dict[str, dict[str, Any]] = {}
    names = {spec.name for spec in TOPICS} | {dead_letter_topic(s) for s in SERVICES}
    for path, text in expected_files().items():
        if not path.endswith(".json"):
            continue
        stem = Path(path).stem
        document = json.loads(text)
        if stem in names:
            schemas[stem] = document
        else:  # the one dead-letter schema serves every service's dead-letter topic
            for service in SERVICES:
                schemas[dead_letter_topic(service)] = document
    return schemas


def compare(
    released: Mapping[str, Mapping[str, Any]],
    current: Mapping[str, Mapping[str, Any]],
    directions: Mapping[str, str],
) -> list[Problem]:
    """Every consumer-breaking difference between the released schemas and today's."""
    problems = []
    for topic, old in sorted(released.items()):
        new = current.get(topic)
        if new is None:
            problems.append(Problem(topic, "", "a released topic was removed"))
            continue
        # Our consumers (new) must read everything publishers on the released schema send.
        found = _Pair(writer_root=old, reader_root=new).covers(new, old, "")
        if directions.get(topic, "both") == "both":
            # Consumers on the released schema must read what we publish now.
            found += _Pair(writer_root=new, reader_root=old).covers(old, new, "")
        problems += [Problem(topic, *_split(p)) for p in dict.fromkeys(found)]
    return problems


def _split(problem: str) -> tuple[str, str]:
    where, _, what = problem.partition(": ")
    return where.lstrip("."), what


def package_version(root: Path = DEFAULT_ROOT) -> str:
    with (root / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def load_baseline(root: Path = DEFAULT_ROOT) -> tuple[str, dict[str, dict[str, Any]]]:
    document = json.loads((root / BASELINE).read_text(encoding="utf-8"))
    return str(document["version"]), dict(document["schemas"])


def write_baseline(root: Path, version: str, schemas: Mapping[str, Any]) -> None:
    path = root / BASELINE
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": version, "schemas": dict(sorted(schemas.items()))}
    path.write_text(
        json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _changelog_versions(root: Path) -> Iterator[str]:
    for line in (root / CHANGELOG).read_text(encoding="utf-8").splitlines():
        match = re.match(r"^## \[?(\d+\.\d+\.\d+)\]?", line)
        if match:
            yield match.group(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_contracts.compat", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if a change breaks consumers of the release"
    )
    mode.add_argument(
        "--release", action="store_true", help="record today's schemas as the released baseline"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"contracts folder (default {DEFAULT_ROOT})"
    )
    args = parser.parse_args(argv)
    root: Path = args.root
    released_version, released = load_baseline(root)
    problems = compare(released, current_schemas(), topic_directions())
    for problem in problems:
        print(f"breaking: {problem}", file=sys.stderr)
    if problems:
        print(
            f"{len(problems)} consumer-breaking change(s) against billing-contracts {released_version}: "
            "keep the field optional and the types as they were, or publish the change on a new topic "
            "version (a new contract class …V<N+1> on ….v<N+1>)",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print(f"contracts are compatible with the released billing-contracts {released_version}")
        return 0
    version = package_version(root)
    if _version_key(version) <= _version_key(released_version) and released != current_schemas():
        print(f"bump the version in contracts/pyproject.toml above {released_version} first", file=sys.stderr)
        return 1
    if version not in set(_changelog_versions(root)):
        print(f"contracts/{CHANGELOG} has no section `## {version}`", file=sys.stderr)
        return 1
    write_baseline(root, version, current_schemas())
    print(f"released baseline is now billing-contracts {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
