"""Kafka plumbing: the FastStream broker, batch subscriptions with an explicit ack policy, the relay's producer."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.helpers import create_ssl_context
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from billing_contracts.registry import RECORD_OVERHEAD_BYTES, largest_message_bytes
from service_runtime.consumer import IdempotentConsumer
from service_runtime.outbox import OutgoingMessage, UnpublishableError
from service_runtime.ratelimit import RateLimitedLog
from service_runtime.settings import ServiceSettings
from service_runtime.tracing import consume_span

log = structlog.get_logger(__name__)


_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


def check_kafka_security(settings: ServiceSettings) -> None:
    """Raise ValueError when the security settings are incomplete (checked when a client is built, so
    that commands which never talk to Kafka, `migrate` and the CronJob's trigger, need no Kafka secrets)."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_") and not (settings.kafka_sasl_username and settings.kafka_sasl_password):
        raise ValueError(f"{protocol} needs kafka_sasl_username and kafka_sasl_password")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        raise ValueError("mutual TLS needs both kafka_ssl_certfile and kafka_ssl_keyfile")
    if settings.kafka_ssl_certfile is not None and protocol not in ("SSL", "SASL_SSL"):
        raise ValueError("a client certificate needs kafka_security_protocol SSL or SASL_SSL")


def kafka_ssl_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    """The TLS context of `SSL` and `SASL_SSL` connections: our CA, and a client certificate for mutual TLS.

    Without `kafka_ssl_cafile` the system's trust store is used (a broker with a public certificate).
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        password=settings.kafka_ssl_key_password.get_secret_value()
        if settings.kafka_ssl_key_password
        else None,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def kafka_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """The security keyword arguments of every aiokafka client (producer, consumer, admin) we create."""
    check_kafka_security(settings)
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = kafka_ssl_context(settings)
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # check_kafka_security guarantees it
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def broker_security(settings: ServiceSettings) -> BaseSecurity | None:
    """The same security as FastStream's `security=` object (FastStream turns it into aiokafka options)."""
    check_kafka_security(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    assert settings.kafka_sasl_username is not None
    assert settings.kafka_sasl_password is not None
    return _SASL[settings.kafka_sasl_mechanism](
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def make_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    """The service's FastStream broker. Consumers commit offsets themselves (see `subscribe`)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        security=broker_security(settings),
        graceful_timeout=15.0,
        # Per-message access logs at DEBUG through the standard "faststream" logger, which
        # configure_logging keeps at WARNING; our own logs say what matters.
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )


def subscribe(
    broker: KafkaBroker,
    consumer: IdempotentConsumer[Any],
    *,
    group: str,
    max_records: int,
    retry_pause_s: float = 1.0,
) -> Any:
    """Subscribe `consumer` to its topics in batches; return FastStream's subscriber (for liveness).

    Ack policy NACK_ON_ERROR, so that offsets are committed only after the batch's transaction
    committed, and a failed batch is re-read from its first offset (at least once in, exactly once
    in effect thanks to the processed-event claims). FastStream's default would be at most once.
    A batch fails only for transient reasons (the consumer dead-letters everything else): the
    handler nacks it itself, so that an outage logs one warning a minute, not a traceback per retry.
    """
    warnings = RateLimitedLog(log)

    subscriber = broker.subscriber(
        *consumer.topics,
        group_id=group,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=100,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=_records_only,
        decoder=_undecoded,
        title=f"{group}",
    )

    @subscriber
    async def handle(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
            with consume_span(group, records):
                await consumer.process(records)
        except Exception as exc:
            warnings.warning(
                "batch_will_be_redelivered",
                exc_info=True,
                group=group,
                size=len(records),
                error=type(exc).__name__,
            )
            await asyncio.sleep(retry_pause_s)
            # Seek back to the batch's first offsets; FastStream then neither commits nor logs again.
            await message.nack()
            return
        warnings.recovered("batch_will_be_redelivered", group=group)

    return subscriber


async def _records_only(
    records: tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[Any], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's batch parser without its per-record header dictionaries: we use only the records.

    The message keeps what acking needs (the records and the consumer, for commit and seek).
    """
    parser = getattr(original, "__self__", None)
    if not isinstance(parser, AioKafkaBatchParser) or not records:
        return await original(records)
    first, last = records[0], records[-1]
    message: StreamMessage[Any] = parser.msg_class(
        body=b"",
        raw_message=records,
        message_id=f"{first.offset}-{last.offset}-{first.timestamp}",
        correlation_id=f"{first.topic}-{first.partition}-{first.offset}",
        consumer=parser._consumer,  # what the default parser passes too
    )
    return message


async def _undecoded(message: StreamMessage[Any]) -> None:
    """Skip FastStream's per-record JSON decoding: the consumer validates the raw bytes itself."""
    return


class KafkaPublisher:
    """The relay's producer: sends a batch and waits until the broker acknowledged every record."""

    def __init__(self, settings: ServiceSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # aiokafka binds to the running loop, so the producer is made here, not in __init__.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._settings.kafka_enable_idempotence,
            linger_ms=5,
            max_batch_size=256 * 1024,
            # Every topic's limit plus framing; the outbox checks each message against its own topic.
            max_request_size=largest_message_bytes() + RECORD_OVERHEAD_BYTES,
            **kafka_client_options(self._settings),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message and wait for every acknowledgement.

        Raises `UnpublishableError` naming the messages the broker (or the producer's own size
        check) refused for good, once all the others are acknowledged; any other failure as it is.
        """
        producer = self._producer
        if producer is None:
            raise RuntimeError("the publisher is not started")
        refused: dict[int, str] = {}
        futures: list[tuple[int, asyncio.Future[Any]]] = []
        for i, m in enumerate(messages):
            try:
                future = await producer.send(
                    m.topic,
                    value=m.value,
                    key=m.key,
                    headers=[(k, v.encode()) for k, v in m.headers.items()],
                )
            except _REFUSED_FOR_GOOD as exc:
                refused[i] = _refusal(exc)
                continue
            futures.append((i, future))
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        for (i, _), result in zip(futures, results, strict=True):
            if isinstance(result, _REFUSED_FOR_GOOD):
                refused[i] = _refusal(result)
            elif isinstance(result, BaseException):
                raise result
        if refused:
            raise UnpublishableError(refused)


#: Broker answers (and the producer's own check) that no retry can change: the record is too
#: large, or its topic name or format is invalid. Anything else (a broker down, no leader, no
#: authorisation yet) is retried, and waits for the operator or the network.
_REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)


def _refusal(exc: BaseException) -> str:
    return f"the broker refused it for good: {type(exc).__name__}: {exc}"
