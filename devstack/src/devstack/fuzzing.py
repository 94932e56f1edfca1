"""Seeded hostile inputs for every consumed topic: schema-derived invalid messages and byte mutations of valid ones.

Used by the fuzz tests (small, in `make test`) and by `python -m benchmarks fuzz` (large). The
invalid messages are derived from each contract's published JSON Schema (the one in
`contracts/schemas`, built by `billing_contracts.export.json_schema`): a required field left out, a
value of the wrong JSON type, a pattern, enum, length or range violated, a date or timestamp
outside the accepted range, a number for a date. Byte mutations start from a valid message:
nesting deeper than any parser allows, a NUL in a text field, invalid UTF-8, a field larger than
the topic accepts, a wrong or missing key, a truncated document, an empty value.

Whether an input is valid is decided by the contract itself (pydantic), the key rule and the
documented limits, not by the consumer under test.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_contracts.base import Message, wire_json
from billing_contracts.examples import example_of
from billing_contracts.export import json_schema
from billing_contracts.registry import max_message_bytes
from devstack.infra import KafkaTarget
from devstack.testing import wait_until
from service_runtime.host import ServiceHost

#: Every byte mutation, each applied once per topic in the CI run.
BYTE_MUTATIONS = (
    "deep-nesting",
    "nul-in-text",
    "invalid-utf-8",
    "huge-field",
    "wrong-key",
    "missing-key",
    "truncated",
    "empty",
)


@dataclass(frozen=True)
class FuzzInput:
    """One record to publish, and what must become of it."""

    topic: str
    key: bytes | None
    value: bytes
    valid: bool
    kind: str
    event_id: str | None


def inputs_for(
    topic: str,
    contract: type[Message],
    *,
    rng: random.Random,
    valid: int,
    schema_invalid: int,
    byte_invalid: int,
) -> list[FuzzInput]:
    """`valid` valid messages, `schema_invalid` schema-derived and `byte_invalid` byte mutations, shuffled."""
    inputs = [_valid(topic, contract, rng) for _ in range(valid)]
    candidates = list(_schema_mutations(contract))
    rng.shuffle(candidates)
    for kind, mutate in candidates[:schema_invalid]:
        base = _fresh(contract, rng)
        document = base.model_dump(mode="json")
        mutate(document)
        value = json.dumps(document, ensure_ascii=False).encode()
        inputs.append(_judged(topic, contract, base.kafka_key(), value, f"schema:{kind}"))
    kinds = [BYTE_MUTATIONS[i % len(BYTE_MUTATIONS)] for i in range(byte_invalid)]
    for kind in kinds:
        inputs.append(_byte_mutation(topic, contract, kind, rng))
    rng.shuffle(inputs)
    return inputs


def _fresh(contract: type[Message], rng: random.Random) -> Message:
    example = example_of(contract)
    return example.model_copy(update={"event_id": uuid.UUID(int=rng.getrandbits(128), version=4)})


def _valid(topic: str, contract: type[Message], rng: random.Random) -> FuzzInput:
    message = _fresh(contract, rng)
    return FuzzInput(topic, message.kafka_key(), wire_json(message), True, "valid", str(message.event_id))


def _judged(topic: str, contract: type[Message], key: bytes, value: bytes, kind: str) -> FuzzInput:
    """Valid when the contract accepts it (a lax coercion may make a mutation valid)."""
    try:
        message = contract.model_validate_json(value)
    except ValidationError:
        return FuzzInput(topic, key, value, False, kind, None)
    ok = message.kafka_key() == key and len(value) + len(key) <= max_message_bytes(topic)
    return FuzzInput(topic, key, value, ok, kind, str(message.event_id) if ok else None)


def _byte_mutation(topic: str, contract: type[Message], kind: str, rng: random.Random) -> FuzzInput:
    message = _fresh(contract, rng)
    key = message.kafka_key()
    value = wire_json(message)
    text_field = _text_field(message)
    if kind == "deep-nesting":
        value = value[:-1] + b', "nested": ' + b'{"a":' * 1100 + b"1" + b"}" * 1100 + b"}"
    elif kind == "nul-in-text":
        document = message.model_dump(mode="json")
        document[text_field] = str(document[text_field]) + "\u0000"
        value = json.dumps(document).encode()
    elif kind == "invalid-utf-8":
        cut = rng.randrange(1, len(value) - 1)
        value = value[:cut] + b"\xff\xfe\xc3" + value[cut:]
    elif kind == "huge-field":
        value = value[:-1] + b', "padding": "' + b"x" * (max_message_bytes(topic) + 1) + b'"}'
    elif kind == "wrong-key":
        key = b"not-" + key
    elif kind == "missing-key":
        return FuzzInput(topic, None, value, False, f"bytes:{kind}", None)
    elif kind == "truncated":
        value = value[: rng.randrange(1, len(value) - 1)]
    elif kind == "empty":
        value = b""
    return FuzzInput(topic, key, value, False, f"bytes:{kind}", None)


def _text_field(message: Message) -> str:
    # `producer` is on every message and is free text.
    return "producer"


Mutation = Any


def _schema_mutations(contract: type[Message]) -> Iterator[tuple[str, Mutation]]:
    schema = json_schema(contract, name="fuzz")
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    for name, raw in sorted(schema.get("properties", {}).items()):
        prop = _resolve(raw, definitions)
        if name in required:
            yield f"missing:{name}", _drop(name)
            yield f"null:{name}", _set(name, None)
        for kind, value in _violations(prop):
            yield f"{kind}:{name}", _set(name, value)


def _resolve(prop: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        target = definitions.get(prop["$ref"].rsplit("/", 1)[-1], {})
        return {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    branches = [b for b in prop.get("anyOf", ()) if b.get("type") != "null"]
    if len(branches) == 1:
        return _resolve(branches[0], definitions)
    return prop


def _violations(prop: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    kind = prop.get("type")
    wrong_type = {
        "string": 12345,
        "integer": "x",
        "number": "x",
        "boolean": "maybe",
        "object": [1],
        "array": {},
    }
    if kind in wrong_type:
        yield "type", wrong_type[kind]
    if "enum" in prop:
        yield "enum", "not-a-member"
    if "pattern" in prop:
        yield "pattern", "!! not matching !!"
    if "maxLength" in prop:
        yield "maxLength", "a" * (int(prop["maxLength"]) + 1)
    if prop.get("minLength", 0) >= 1:
        yield "minLength", ""
    if "maximum" in prop:
        yield "maximum", prop["maximum"] + 1
    if "minimum" in prop:
        yield "minimum", prop["minimum"] - 1
    if prop.get("format") == "date":
        yield "date-range", "0001-01-01"
        yield "date-range", "9999-12-31"
        yield "date-number", 20261102
    if prop.get("format") == "date-time":
        yield "timestamp-range", "0001-01-01T00:00:00+14:00"
        yield "timestamp-naive", "2026-10-05T09:30:00"
        yield "timestamp-number", 1791000000


def _drop(name: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document.pop(name, None)

    return mutate


def _set(name: str, value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document[name] = copy.deepcopy(value)

    return mutate


@dataclass
class HttpFuzzResult:
    """What schema-driven HTTP fuzzing of one service tried and found."""

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    operations: int = 0


def fuzz_openapi(base_url: str, *, examples: int, seed: int, token: str | None = None) -> HttpFuzzResult:
    """Send `examples` schema-valid and as many schema-invalid requests per operation of the
    service's OpenAPI (schemathesis), seeded; blocking (run it in a thread beside the server).

    `token` (one holding every role, `dev-all-roles`) goes with every request, so that the
    requests get past each route's policy to its validation and use case."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis.errors import HypothesisDeprecationWarning, Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    result = HttpFuzzResult()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    with requests.Session() as session:
        for found in schema.get_all_operations():
            operation = found.ok()  # type: ignore[union-attr]  # an invalid operation fails the run
            result.operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                def call(case: Any) -> None:
                    response = case.call(base_url=base_url, session=session, timeout=30, headers=headers)
                    result.requests += 1
                    result.by_status[response.status_code] = result.by_status.get(response.status_code, 0) + 1
                    if response.status_code >= 500:
                        result.server_errors.append(
                            f"{response.status_code} {case.method} {case.formatted_path} "
                            f"query={case.query!r} body={str(case.body)[:200]!r}: {response.text[:300]}"
                        )

                run = settings(
                    max_examples=examples,
                    database=None,
                    deadline=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )(given(case=operation.as_strategy(generation_mode=mode))(call))
                try:
                    with warnings.catch_warnings():
                        # schemathesis's own strategies use `random`; Hypothesis warns about it.
                        warnings.simplefilter("ignore", HypothesisDeprecationWarning)
                        fixed_seed(seed)(run)()
                except Unsatisfiable:
                    pass  # no invalid request exists for an operation without inputs (e.g. /healthz)
    return result


@dataclass(frozen=True)
class Sent:
    """Where one published record landed."""

    topic: str
    partition: int
    offset: int


class RawPublisher:
    """Publishes any bytes with any key, as a careless or hostile producer would (4 MB requests allowed)."""

    def __init__(self, kafka: KafkaTarget) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            enable_idempotence=kafka.enable_idempotence,
            acks="all",
            max_request_size=4 * 1024 * 1024,
        )

    async def __aenter__(self) -> RawPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, topic: str, value: bytes | None, key: bytes | None) -> Sent:
        metadata: RecordMetadata = await self._producer.send_and_wait(topic, value=value, key=key)
        return Sent(topic, metadata.partition, metadata.offset)


class Databases:
    """Reads the services' own tables (each service has its schema in the stack's database)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            return [dict(r._mapping) for r in await connection.execute(text(sql), params)]

    async def dead_letter(self, schema: str, sent: Sent) -> dict[str, Any] | None:
        rows = await self.rows(
            f'SELECT * FROM "{schema}".dead_letters WHERE topic = :t AND partition = :p AND "offset" = :o',  # noqa: S608
            t=sent.topic,
            p=sent.partition,
            o=sent.offset,
        )
        return rows[0] if rows else None

    async def dead_letters(self, schema: str, where: Sequence[Sent]) -> dict[Sent, tuple[str, str]]:
        """(failure, reason) of the dead letters at these coordinates, in one query."""
        rows = await self.rows(
            f'SELECT topic, partition, "offset", failure, reason FROM "{schema}".dead_letters '  # noqa: S608
            'WHERE topic = ANY(:topics) AND "offset" = ANY(:offsets)',
            topics=sorted({w.topic for w in where}),
            offsets=sorted({w.offset for w in where}),
        )
        return {Sent(r["topic"], r["partition"], r["offset"]): (r["failure"], r["reason"]) for r in rows}

    async def processed(self, schema: str, event_ids: Sequence[str]) -> set[str]:
        rows = await self.rows(
            f'SELECT CAST(event_id AS text) AS id FROM "{schema}".processed_events '  # noqa: S608
            "WHERE CAST(event_id AS text) = ANY(:ids)",
            ids=list(event_ids),
        )
        return {r["id"] for r in rows}


async def lag(kafka: KafkaTarget, group: str, ends: dict[tuple[str, int], int]) -> int:
    """Records up to `ends` ((topic, partition) → offset after the last record we published) that
    the group has not committed yet; 0 when its committed offsets reach them.

    The ends come from the producer's acknowledgements: the embedded broker answers wrong end
    offsets to `ListOffsets` (docs/benchmarks.md, "Tansu quirks").
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        behind = 0
        for (topic, partition), end in ends.items():
            committed = await consumer.committed(TopicPartition(topic, partition))
            behind += max(0, end - (committed or 0))
        return behind
    finally:
        await consumer.stop()


@dataclass
class ConsumerFuzzResult:
    """What fuzzing one service's consumers sent and what became of it."""

    inputs: int = 0
    valid: int = 0
    applied: int = 0
    rejected_by_rule: int = 0
    dead_lettered: int = 0
    by_failure: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    #: Inputs whose fate was wrong: a valid one not applied, a bad one not dead-lettered with a reason.
    wrong: list[str] = field(default_factory=list)
    lag: int = 0


async def fuzz_consumers(
    host: ServiceHost,
    kafka: KafkaTarget,
    engine: AsyncEngine,
    *,
    seed: int,
    valid: int,
    schema_invalid: int,
    byte_invalid: int,
    within: float = 120.0,
) -> ConsumerFuzzResult:
    """Publish seeded inputs to every topic of every subscription of `host` (which must be running),
    wait for a verdict on each, and check it: a valid input is applied (or refused by a business
    rule, with its reason), every other input is dead-lettered as malformed or a schema violation
    with a reason, and every group's committed offsets reach the end of its topics."""
    schema = host.tables.dead_letters.schema
    if schema is None:
        raise ValueError("the service's tables have no schema")
    databases = Databases(engine)
    rng = random.Random(f"{seed}-{host.name}")
    sent: list[tuple[Sent, FuzzInput, str]] = []
    async with RawPublisher(kafka) as publisher:
        for consumer in host.consumers:
            for topic, contract in sorted(consumer.contracts.items()):
                for fuzz in inputs_for(
                    topic,
                    contract,
                    rng=rng,
                    valid=valid,
                    schema_invalid=schema_invalid,
                    byte_invalid=byte_invalid,
                ):
                    sent.append((await publisher.send(topic, fuzz.value, fuzz.key), fuzz, consumer.group))

    async def verdicts() -> dict[int, tuple[str, str]] | None:
        processed = await databases.processed(schema, [f.event_id for _, f, _ in sent if f.event_id])
        letters = await databases.dead_letters(schema, [where for where, _, _ in sent])
        outcome: dict[int, tuple[str, str]] = {}
        for i, (where, fuzz, _) in enumerate(sent):
            letter = letters.get(where)
            if letter is not None:
                outcome[i] = letter
            elif fuzz.event_id in processed:
                outcome[i] = ("applied", "")
            else:
                return None
        return outcome

    outcome = await wait_until(
        verdicts, within=within, interval=0.5, what=f"a verdict on every input to {host.name}"
    )
    result = ConsumerFuzzResult(inputs=len(sent), valid=sum(f.valid for _, f, _ in sent))
    for i, (where, fuzz, _) in enumerate(sent):
        failure, reason = outcome[i]
        result.by_failure[failure] += 1
        result.by_kind[fuzz.kind.split(":")[0]] += 1
        if fuzz.valid:
            ok = failure == "applied" or (failure == "rejected" and not reason.startswith("processing error"))
            result.applied += failure == "applied"
            result.rejected_by_rule += failure == "rejected"
        else:
            ok = failure in ("malformed", "schema_violation") and bool(reason.strip())
            result.dead_lettered += ok
        if not ok:
            result.wrong.append(f"{where} {fuzz.kind} valid={fuzz.valid}: {failure}: {reason[:200]}")
    ends: dict[str, dict[tuple[str, int], int]] = {}
    for where, _, group in sent:
        group_ends = ends.setdefault(group, {})
        group_ends[(where.topic, where.partition)] = max(
            group_ends.get((where.topic, where.partition), 0), where.offset + 1
        )

    async def caught_up() -> bool:
        result.lag = sum([await lag(kafka, g, group_ends) for g, group_ends in ends.items()])
        return result.lag == 0

    try:
        await wait_until(caught_up, within=30, what=f"{host.name}'s groups committing to the end")
    except AssertionError:
        result.wrong.append(f"committed offsets stay {result.lag} records behind the end")
    return result
