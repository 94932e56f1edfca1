"""Prometheus metrics of one service, in a registry of its own (no global state between apps).

Every metric name lives in this module, so that the alert rules and the dashboard in
`deploy/base/monitoring/` can only reference metrics a service exports (a test checks each
expression against `CATALOG`). The billing run's and Procountor's metrics are created on first
use through `ServiceMetrics.billing_run` and `ServiceMetrics.procountor`, so services that never
bill or deliver export none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.gc_collector import GCCollector

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name as exposed (counters gain `_total`), kind, labels and who fills it."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    filled_by: str = "runtime"

    def samples(self) -> set[str]:
        """The sample names Prometheus stores for this metric."""
        if self.kind == "counter":
            return {f"{self.name}_total", f"{self.name}_created"}
        if self.kind == "histogram":
            return {f"{self.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        return {self.name}


# --- what the runtime measures ----------------------------------------------------------------
MESSAGES_CONSUMED = MetricSpec("messages_consumed", "counter", ("topic",), "Messages read from Kafka")
MESSAGES_DUPLICATE = MetricSpec(
    "messages_duplicate",
    "counter",
    ("topic",),
    "Messages skipped because their event id was already processed",
)
MESSAGES_DEAD_LETTERED = MetricSpec(
    "messages_dead_lettered", "counter", ("topic", "failure"), "Messages sent to the dead-letter topic"
)
CONSUMER_BATCH_SECONDS = MetricSpec(
    "consumer_batch_seconds", "histogram", (), "Time to process one consumed batch"
)
OUTBOX_PUBLISHED = MetricSpec("outbox_published", "counter", (), "Outbox messages published to Kafka")
OUTBOX_PARKED = MetricSpec(
    "outbox_parked",
    "counter",
    ("topic",),
    "Outbox messages parked because they can never be published (too large, refused for good)",
)
OUTBOX_PARKED_ROWS = MetricSpec(
    "outbox_parked_rows",
    "gauge",
    (),
    "Outbox rows parked and never to be published until an operator clears them (read from the table)",
)
SERVICE_STARTS = MetricSpec("service_starts", "counter", ("service",), "Service starts")
CONSUMER_LAG = MetricSpec(
    "kafka_consumer_lag",
    "gauge",
    ("group", "topic", "partition"),
    "Records between this consumer's position and the partition's end offset, per assigned partition",
)
OUTBOX_BACKLOG = MetricSpec("outbox_backlog", "gauge", (), "Outbox rows not yet published")
OUTBOX_OLDEST_AGE = MetricSpec(
    "outbox_oldest_age_seconds", "gauge", (), "Age of the oldest unpublished outbox row (0 when empty)"
)
HTTP_REQUEST_DURATION = MetricSpec(
    "http_request_duration_seconds",
    "histogram",
    ("method", "route", "status"),
    "HTTP requests by route template and status, with their latency",
)
BACKGROUND_TASK_UP = MetricSpec(
    "background_task_up",
    "gauge",
    ("task",),
    "1 while a consumer, the outbox relay or a background loop runs; 0 once it died (/healthz fails)",
)

# --- filled by the tools (dead letters), invoicing's billing run and procountor-sync -------------
DEAD_LETTERS_PENDING = MetricSpec(
    "dead_letters_pending",
    "gauge",
    ("group", "topic", "failure"),
    "Dead letters neither replayed nor discarded",
    filled_by="runtime: from the dead_letters table",
)
BILLING_RUNS = MetricSpec(
    "billing_runs",
    "counter",
    ("outcome",),
    "Billing run attempts, by outcome (completed, completed_with_failures, failed)",
    filled_by="invoicing: billing run",
)
BILLING_RUN_DURATION = MetricSpec(
    "billing_run_duration_seconds",
    "histogram",
    (),
    "Wall time of one billing run, start to finish",
    filled_by="invoicing: billing run",
)
BILLING_RUN_PAYERS = MetricSpec(
    "billing_run_payers",
    "gauge",
    ("state",),
    "Payers of the latest period's run by state: pending, issued, held, zero, nothing_to_bill, failed",
    filled_by="invoicing: billing run",
)
BILLING_RUN_DUE = MetricSpec(
    "billing_run_due_timestamp_seconds",
    "gauge",
    (),
    "09:00 Europe/Helsinki of the latest run day (B-03) on or before today, as Unix time",
    filled_by="invoicing: billing run",
)
BILLING_RUN_LAST_COMPLETED = MetricSpec(
    "billing_run_last_completed_timestamp_seconds",
    "gauge",
    (),
    "When the latest billing run completed (read from the database, so every replica agrees)",
    filled_by="invoicing: billing run",
)
PROCOUNTOR_DELIVERIES = MetricSpec(
    "procountor_deliveries",
    "counter",
    ("kind", "state"),
    "Delivery attempts to Procountor by kind and outcome: delivered, retrying (failed, tried again), "
    "refused (failed for good until an operator requeues it)",
    filled_by="procountor-sync",
)
PROCOUNTOR_DELIVERIES_PENDING = MetricSpec(
    "procountor_deliveries_pending",
    "gauge",
    ("state",),
    "Deliveries not done, by state, from the table: queued, retrying (last attempt failed), "
    "refused (awaiting an operator), awaiting_approval",
    filled_by="procountor-sync",
)
PROCOUNTOR_TOTALS_MISMATCHES = MetricSpec(
    "procountor_totals_mismatches",
    "counter",
    (),
    "Invoices whose totals Procountor computed otherwise",
    filled_by="procountor-sync",
)
PROCOUNTOR_PAYMENTS = MetricSpec(
    "procountor_payments_published", "counter", (), "PaymentReceivedV1 published", filled_by="procountor-sync"
)
PROCOUNTOR_WEBHOOKS_REFUSED = MetricSpec(
    "procountor_webhooks_refused",
    "counter",
    ("reason",),
    "Procountor webhook requests refused, by reason (forged, unsigned, stale, replay)",
    filled_by="procountor-sync",
)
PROCOUNTOR_THROTTLED = MetricSpec(
    "procountor_throttled",
    "counter",
    ("endpoint",),
    "429 Too Many Requests answers from the Procountor API",
    filled_by="procountor-sync",
)
PROCOUNTOR_RATE_LIMIT_WAIT = MetricSpec(
    "procountor_rate_limit_wait_seconds",
    "histogram",
    (),
    "Time a Procountor request waited for our rate limiter or a Retry-After",
    filled_by="procountor-sync",
)

PARTNERS_PARKED_INPUTS = MetricSpec(
    "partners_parked_inputs",
    "gauge",
    (),
    "Partner-program inputs parked, waiting for what they need (a firm's registration, a person's "
    "earlier fact); dead-lettered only when their parking expires (read from the table)",
    filled_by="partners",
)
PARTNERS_PARKED_OLDEST_AGE = MetricSpec(
    "partners_parked_inputs_oldest_age_seconds",
    "gauge",
    (),
    "Age of the oldest parked partner-program input (0 when none)",
    filled_by="partners",
)

CATALOG: tuple[MetricSpec, ...] = (
    MESSAGES_CONSUMED,
    MESSAGES_DUPLICATE,
    MESSAGES_DEAD_LETTERED,
    CONSUMER_BATCH_SECONDS,
    OUTBOX_PUBLISHED,
    OUTBOX_PARKED,
    OUTBOX_PARKED_ROWS,
    SERVICE_STARTS,
    CONSUMER_LAG,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    HTTP_REQUEST_DURATION,
    BACKGROUND_TASK_UP,
    DEAD_LETTERS_PENDING,
    BILLING_RUNS,
    BILLING_RUN_DURATION,
    BILLING_RUN_PAYERS,
    BILLING_RUN_DUE,
    BILLING_RUN_LAST_COMPLETED,
    PROCOUNTOR_DELIVERIES,
    PROCOUNTOR_DELIVERIES_PENDING,
    PROCOUNTOR_THROTTLED,
    PROCOUNTOR_RATE_LIMIT_WAIT,
    PROCOUNTOR_TOTALS_MISMATCHES,
    PROCOUNTOR_PAYMENTS,
    PROCOUNTOR_WEBHOOKS_REFUSED,
    PARTNERS_PARKED_INPUTS,
    PARTNERS_PARKED_OLDEST_AGE,
)

#: Sample-name prefixes of the standard collectors every registry has (process, Python, GC).
STANDARD_PREFIXES = ("process_", "python_")

#: Latency buckets for API calls: most answer in milliseconds, a billing-run trigger in minutes.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0)


def exported_samples() -> set[str]:
    """Every sample name a service can expose (standard collectors aside)."""
    return set().union(*(spec.samples() for spec in CATALOG))


def _counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    return Counter(spec.name, spec.help, list(spec.labels), registry=registry)


def _gauge(spec: MetricSpec, registry: CollectorRegistry) -> Gauge:
    return Gauge(spec.name, spec.help, list(spec.labels), registry=registry)


def _histogram(
    spec: MetricSpec, registry: CollectorRegistry, buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS
) -> Histogram:
    return Histogram(spec.name, spec.help, list(spec.labels), registry=registry, buckets=buckets)


class BillingRunMetrics:
    """The billing run's metrics (invoicing: the attempt's outcome and time; gauges from the database)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = _counter(BILLING_RUNS, registry)
        self.duration = _histogram(
            BILLING_RUN_DURATION, registry, buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
        )
        self.payers = _gauge(BILLING_RUN_PAYERS, registry)
        self.due = _gauge(BILLING_RUN_DUE, registry)
        self.last_completed = _gauge(BILLING_RUN_LAST_COMPLETED, registry)


class ProcountorMetrics:
    """Deliveries to Procountor and its rate limit (procountor-sync)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = _counter(PROCOUNTOR_DELIVERIES, registry)
        self.pending = _gauge(PROCOUNTOR_DELIVERIES_PENDING, registry)
        self.throttled = _counter(PROCOUNTOR_THROTTLED, registry)
        self.rate_limit_wait = _histogram(
            PROCOUNTOR_RATE_LIMIT_WAIT, registry, buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60)
        )
        self.totals_mismatches = _counter(PROCOUNTOR_TOTALS_MISMATCHES, registry)
        self.payments = _counter(PROCOUNTOR_PAYMENTS, registry)
        self.webhooks_refused = _counter(PROCOUNTOR_WEBHOOKS_REFUSED, registry)


class PartnersMetrics:
    """The partner program's parked inputs (partners)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.parked = _gauge(PARTNERS_PARKED_INPUTS, registry)
        self.parked_oldest_age = _gauge(PARTNERS_PARKED_OLDEST_AGE, registry)


class ServiceMetrics:
    """The metrics every service exposes on /metrics."""

    def __init__(self, service: str) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.consumed = _counter(MESSAGES_CONSUMED, registry).labels
        self.duplicates = _counter(MESSAGES_DUPLICATE, registry).labels
        self.dead_lettered = _counter(MESSAGES_DEAD_LETTERED, registry).labels
        self.batch_seconds = _histogram(CONSUMER_BATCH_SECONDS, registry)
        self.outbox_published = _counter(OUTBOX_PUBLISHED, registry)
        self.outbox_parked = _counter(OUTBOX_PARKED, registry).labels
        self.outbox_parked_rows = _gauge(OUTBOX_PARKED_ROWS, registry)
        self.info = _counter(SERVICE_STARTS, registry).labels(service=service)
        self.consumer_lag = _gauge(CONSUMER_LAG, registry)
        self.outbox_backlog = _gauge(OUTBOX_BACKLOG, registry)
        self.outbox_oldest_age = _gauge(OUTBOX_OLDEST_AGE, registry)
        self.http_duration = _histogram(HTTP_REQUEST_DURATION, registry, buckets=HTTP_BUCKETS)
        self.task_up = _gauge(BACKGROUND_TASK_UP, registry)
        self.dead_letters_pending = _gauge(DEAD_LETTERS_PENDING, registry)

    @cached_property
    def billing_run(self) -> BillingRunMetrics:
        return BillingRunMetrics(self.registry)

    @cached_property
    def procountor(self) -> ProcountorMetrics:
        return ProcountorMetrics(self.registry)

    @cached_property
    def partners(self) -> PartnersMetrics:
        return PartnersMetrics(self.registry)
