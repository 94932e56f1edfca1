"""OpenTelemetry traces across HTTP and Kafka, configured by the standard OTEL_* variables, off by default.

Tracing starts only when `OTEL_TRACES_EXPORTER` names an exporter (`otlp` or `console`) or an OTLP
endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and never
with `OTEL_SDK_DISABLED=true`. Everything else (service name, resource attributes, sampler,
headers, timeouts) is read by the SDK and the OTLP exporter from their usual variables.

Context crosses Kafka in message headers (W3C `traceparent`/`tracestate`): the outbox stores the
context of the transaction that wrote a message, so the consumer's span continues the trace of
the request or message that caused it, not of the relay that happened to publish it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind

_tracer = trace.get_tracer("service_runtime")
_configured = False


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces (the SDK itself would default to on; we do not)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK's tracer provider once per process if asked to; True when tracing is on."""
    global _configured
    if _configured or not tracing_requested(environ):
        return _configured
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter: SpanExporter
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current trace context to message or request headers (nothing when no span is active)."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    return propagate.extract(headers)


def kafka_headers(raw: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """aiokafka's header tuples as a text mapping, for `extract_context`."""
    return {k: v.decode(errors="replace") for k, v in raw or () if isinstance(v, bytes | bytearray)}


@contextlib.contextmanager
def consume_span(group: str, records: Sequence[Any]) -> Iterator[trace.Span]:
    """One span per consumed batch, linked to the span that produced each record (OTel messaging conventions)."""
    links = []
    for record in records:
        span_context = trace.get_current_span(
            extract_context(kafka_headers(getattr(record, "headers", None)))
        ).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    topics = sorted({r.topic for r in records})
    # One producer context (the usual case, e.g. one command) becomes the parent, so the trace reads end to end.
    parent = (
        trace.set_span_in_context(trace.NonRecordingSpan(links[0].context))
        if len({link.context.trace_id for link in links}) == 1
        else otel_context.Context()
    )
    with _tracer.start_as_current_span(
        f"{','.join(topics)} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
            "messaging.batch.message_count": len(records),
            "messaging.destination.name": ",".join(topics),
        },
    ) as span:
        yield span


@contextlib.contextmanager
def server_span(method: str, headers: Mapping[str, str]) -> Iterator[trace.Span]:
    """The span of one HTTP request, continuing the caller's trace from `traceparent`."""
    with _tracer.start_as_current_span(
        method,
        context=extract_context(headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method},
    ) as span:
        yield span
