"""The topic registry names every topic after its contract."""

from billing_contracts.registry import TOPICS


def test_every_topic_is_named_domain_event_version() -> None:
    for spec in TOPICS:
        assert spec.name == f"{spec.contract.message_type}.v{spec.contract.version()}"
