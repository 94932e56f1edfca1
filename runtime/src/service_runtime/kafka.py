"""Kafka plumbing: the FastStream broker, batch subscriptions with an explicit ack policy, the relay's producer."""

from __future__ import annotations

import asyncio
import logging
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
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser
from faststream.message import StreamMessage

from billing_contracts.registry import RECORD_OVERHEAD_BYTES, largest_message_bytes
from service_runtime.consumer import IdempotentConsumer
from service_runtime.outbox import OutgoingMessage, UnpublishableError
from service_runtime.ratelimit import RateLimitedLog
from service_runtime.settings import ServiceSettings

log = structlog.get_logger(__name__)


def make_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    """The service's FastStream broker. Consumers commit offsets themselves (see `subscribe`)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        security=None,
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
) -> None:
    """Subscribe `consumer` to its topics in batches.

    Ack policy NACK_ON_ERROR, so that offsets are committed only after the batch's transaction
    committed, and a failed batch is re-read from its first offset (at least once in, exactly once
    in effect thanks to the processed-event claims). FastStream's default would be at most once.
    A batch fails only for transient reasons (the consumer dead-letters everything else): the
    handler nacks it itself, so that an outage logs one warning a minute, not a traceback per retry.
    """
    warnings = RateLimitedLog(log)

    @broker.subscriber(
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
    async def handle(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
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
            security_protocol=self._settings.kafka_security_protocol,
            linger_ms=5,
            max_batch_size=256 * 1024,
            # Every topic's limit plus framing; the outbox checks each message against its own topic.
            max_request_size=largest_message_bytes() + RECORD_OVERHEAD_BYTES,
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
