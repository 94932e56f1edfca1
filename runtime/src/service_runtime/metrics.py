"""Prometheus metrics of one service, in a registry of its own (no global state between apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ServiceMetrics:
    """The metrics every service exposes on /metrics."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        self.consumed = Counter(
            "messages_consumed", "Messages read from Kafka", ["topic"], registry=self.registry
        ).labels
        self.duplicates = Counter(
            "messages_duplicate",
            "Messages skipped because their event id was already processed",
            ["topic"],
            registry=self.registry,
        ).labels
        self.dead_lettered = Counter(
            "messages_dead_lettered",
            "Messages sent to the dead-letter topic",
            ["topic", "failure"],
            registry=self.registry,
        ).labels
        self.batch_seconds = Histogram(
            "consumer_batch_seconds", "Time to process one consumed batch", registry=self.registry
        )
        self.outbox_published = Counter(
            "outbox_published", "Outbox messages published to Kafka", registry=self.registry
        )
        self.outbox_parked = Counter(
            "outbox_parked",
            "Outbox messages parked because they can never be published (too large, refused for good)",
            ["topic"],
            registry=self.registry,
        ).labels
        self.info = Counter("service_starts", "Service starts", ["service"], registry=self.registry).labels(
            **labels
        )
