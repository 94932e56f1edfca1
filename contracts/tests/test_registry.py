"""The topic registry names every topic after its contract, in one convention."""

import re
from pathlib import Path

import pytest

from billing_contracts.registry import (
    SERVICES,
    TOPICS,
    TopicSpec,
    all_topic_names,
    dead_letter_topic,
    topic_for,
)

TOPIC_NAME = re.compile(r"^[a-z]+(-[a-z]+)*\.[a-z]+(-[a-z]+)*\.v\d+$")
IRREGULAR_PAST = {"given", "held", "sent", "paid", "withdrawn", "left"}


def test_every_topic_is_named_domain_event_version() -> None:
    for spec in TOPICS:
        assert spec.name == f"{spec.contract.message_type}.v{spec.contract.version()}"


@pytest.mark.parametrize("name", all_topic_names())
def test_every_topic_name_follows_the_naming_convention(name: str) -> None:
    assert TOPIC_NAME.fullmatch(name), f"{name} is not `<domain>.<event>.v<N>` in lower-case kebab"


def test_no_two_topics_share_a_name_or_a_contract() -> None:
    assert len({spec.name for spec in TOPICS}) == len(TOPICS)
    assert len({spec.contract for spec in TOPICS}) == len(TOPICS)


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.name)
def test_every_topic_has_a_producer_and_a_consumer_among_known_parties(spec: TopicSpec) -> None:
    assert spec.producers
    assert spec.consumers
    assert set(spec.producers) | set(spec.consumers) <= {*SERVICES, "external"}


@pytest.mark.parametrize("spec", TOPICS, ids=lambda spec: spec.name)
def test_every_event_is_named_in_the_past_tense(spec: TopicSpec) -> None:
    event = spec.contract.message_type.split(".")[1]
    words = event.split("-")
    assert any(w.endswith("ed") or w in IRREGULAR_PAST for w in words), f"{event} is not past tense"


def test_topic_for_finds_the_topic_of_a_contract() -> None:
    spec = TOPICS[0]
    assert topic_for(spec.contract) == spec.name


def test_every_service_has_a_dead_letter_topic() -> None:
    assert [dead_letter_topic(s) for s in SERVICES] == [f"{s}.dead-letter.v1" for s in SERVICES]
    with pytest.raises(ValueError):
        dead_letter_topic("billing")


def test_every_topic_outside_systems_publish_to_is_documented_for_them() -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "publishing-events.md"
    if not guide.exists():
        pytest.skip("the docs are not part of this checkout")
    text = guide.read_text(encoding="utf-8")
    undocumented = [s.name for s in TOPICS if "external" in s.producers and f"`{s.name}`" not in text]
    assert undocumented == [], "add these topics to docs/publishing-events.md"
