"""The gateway's rewriting of Kafka answers, version by version: broker addresses become the gateway's, nothing else changes.

Classic versions are built and read back with aiokafka's own protocol structs (an encoder that is
not ours); flexible versions (KIP-482), which aiokafka does not implement for these APIs, are
built byte by byte here from the protocol's field lists.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from aiokafka.protocol.admin import ApiVersionResponse_v0, ApiVersionResponse_v1
from aiokafka.protocol.coordination import FindCoordinatorResponse_v0, FindCoordinatorResponse_v1
from aiokafka.protocol.metadata import MetadataResponse_v0, MetadataResponse_v1, MetadataResponse_v5

from devstack.kafka_wire import (
    API_API_VERSIONS,
    API_DESCRIBE_CLUSTER,
    API_FIND_COORDINATOR,
    API_METADATA,
    API_SASL_AUTHENTICATE,
    API_SASL_HANDSHAKE,
    Address,
    Reader,
    WireError,
    read_request_header,
    read_sasl_authenticate,
    rewrite_response,
    sasl_authenticate_response,
)

GATEWAY = Address("127.0.0.1", 19093)
CORRELATION = struct.pack(">i", 77)
PARTITION = (0, 0, 1, [1], [1])


def decoded(response_type: Any, payload: bytes) -> Any:
    reader = io.BytesIO(payload)
    assert struct.unpack(">i", reader.read(4))[0] == 77
    return response_type.decode(reader)


def test_metadata_v0_names_the_gateway_for_every_broker_and_keeps_the_topics() -> None:
    body = MetadataResponse_v0(
        brokers=[(1, "tansu.internal", 9092), (2, "other", 9093)],
        topics=[(0, "usage.voucher-created.v1", [PARTITION])],
    ).encode()

    answer = decoded(
        MetadataResponse_v0, rewrite_response(API_METADATA, 0, CORRELATION + body, address=GATEWAY)
    )

    assert answer.brokers == [(1, "127.0.0.1", 19093), (2, "127.0.0.1", 19093)]
    assert answer.topics == [(0, "usage.voucher-created.v1", [PARTITION])]


def test_metadata_v1_keeps_each_broker_s_rack_and_the_controller() -> None:
    body = MetadataResponse_v1(
        brokers=[(1, "kafka-0.kafka", 9092, "eu-north-1a")], controller_id=1, topics=[]
    ).encode()

    answer = decoded(
        MetadataResponse_v1, rewrite_response(API_METADATA, 1, CORRELATION + body, address=GATEWAY)
    )

    assert answer.brokers == [(1, "127.0.0.1", 19093, "eu-north-1a")]
    assert answer.controller_id == 1


def test_metadata_v5_keeps_throttle_cluster_id_and_topics_byte_for_byte() -> None:
    topics: list[Any] = [(0, "t", False, [(0, 0, 1, [1], [1], [])])]
    body = MetadataResponse_v5(
        throttle_time_ms=7,
        brokers=[(1, "h", 1, None)],
        cluster_id="cluster-1",
        controller_id=1,
        topics=topics,
    ).encode()

    rewritten = rewrite_response(API_METADATA, 5, CORRELATION + body, address=GATEWAY)
    answer = decoded(MetadataResponse_v5, rewritten)

    assert answer.throttle_time_ms == 7
    assert answer.brokers == [(1, "127.0.0.1", 19093, None)]
    assert (answer.cluster_id, answer.topics) == ("cluster-1", topics)
    tail = MetadataResponse_v5(
        throttle_time_ms=7, brokers=[], cluster_id="cluster-1", controller_id=1, topics=topics
    )
    assert rewritten.endswith(tail.encode()[8:])


def compact(text: str | None) -> bytes:
    if text is None:
        return b"\x00"
    data = text.encode()
    return bytes([len(data) + 1]) + data


def test_metadata_v12_flexible_keeps_tagged_fields_and_everything_after_the_brokers() -> None:
    broker_tags = b"\x01\x05\x02hi"  # one unknown tagged field: tag 5, two bytes
    after_brokers = (
        compact("cluster-1") + struct.pack(">i", 1) + b"\x01" + b"\x00"
    )  # cluster, controller, no topics, tags
    payload = (
        CORRELATION
        + b"\x00"  # response header v1: no tagged fields
        + struct.pack(">i", 0)  # throttle_time_ms
        + b"\x02"  # one broker
        + struct.pack(">i", 1)
        + compact("tansu.internal")
        + struct.pack(">i", 9092)
        + compact(None)  # rack
        + broker_tags
        + after_brokers
    )

    rewritten = rewrite_response(API_METADATA, 12, payload, address=GATEWAY)

    assert rewritten == (
        CORRELATION
        + b"\x00"
        + struct.pack(">i", 0)
        + b"\x02"
        + struct.pack(">i", 1)
        + compact("127.0.0.1")
        + struct.pack(">i", 19093)
        + compact(None)
        + broker_tags
        + after_brokers
    )


def test_find_coordinator_v0_and_v1_name_the_gateway() -> None:
    v0 = FindCoordinatorResponse_v0(error_code=0, coordinator_id=1, host="tansu", port=9092).encode()
    v1 = FindCoordinatorResponse_v1(
        throttle_time_ms=0, error_code=0, error_message=None, coordinator_id=1, host="tansu", port=9092
    ).encode()

    first = decoded(
        FindCoordinatorResponse_v0,
        rewrite_response(API_FIND_COORDINATOR, 0, CORRELATION + v0, address=GATEWAY),
    )
    second = decoded(
        FindCoordinatorResponse_v1,
        rewrite_response(API_FIND_COORDINATOR, 1, CORRELATION + v1, address=GATEWAY),
    )

    assert (first.coordinator_id, first.host, first.port) == (1, "127.0.0.1", 19093)
    assert (second.coordinator_id, second.host, second.port) == (1, "127.0.0.1", 19093)


def test_find_coordinator_without_a_coordinator_yet_is_passed_on_as_it_is() -> None:
    # COORDINATOR_NOT_AVAILABLE: node -1; the client asks again rather than dial anything.
    v1 = FindCoordinatorResponse_v1(
        throttle_time_ms=0, error_code=15, error_message="not yet", coordinator_id=-1, host="", port=-1
    ).encode()

    assert rewrite_response(API_FIND_COORDINATOR, 1, CORRELATION + v1, address=GATEWAY) == CORRELATION + v1


def test_find_coordinator_v4_rewrites_each_coordinator_of_the_batch() -> None:
    def coordinator(key: str, node: int, host: str, port: int) -> bytes:
        return (
            compact(key)
            + struct.pack(">i", node)
            + compact(host)
            + struct.pack(">ih", port, 0)
            + compact(None)
            + b"\x00"
        )

    def answer(*coordinators: bytes) -> bytes:
        return (
            CORRELATION
            + b"\x00"
            + struct.pack(">i", 0)
            + bytes([len(coordinators) + 1])
            + b"".join(coordinators)
            + b"\x00"
        )

    payload = answer(coordinator("group-a", 1, "tansu", 9092), coordinator("group-b", -1, "", -1))

    assert rewrite_response(API_FIND_COORDINATOR, 4, payload, address=GATEWAY) == answer(
        coordinator("group-a", 1, "127.0.0.1", 19093), coordinator("group-b", -1, "", -1)
    )


def test_describe_cluster_v1_names_the_gateway_for_every_broker() -> None:
    def answer(host: str, port: int) -> bytes:
        return (
            CORRELATION
            + b"\x00"
            + struct.pack(">ih", 0, 0)  # throttle, error
            + compact(None)  # error message
            + b"\x01"  # endpoint type: brokers
            + compact("cluster-1")
            + struct.pack(">i", 1)  # controller
            + b"\x02"
            + struct.pack(">i", 1)
            + compact(host)
            + struct.pack(">i", port)
            + compact("rack-a")
            + b"\x00"
            + struct.pack(">i", -2147483648)  # authorized operations
            + b"\x00"
        )

    assert rewrite_response(API_DESCRIBE_CLUSTER, 1, answer("tansu", 9092), address=GATEWAY) == answer(
        "127.0.0.1", 19093
    )


SASL = {API_SASL_HANDSHAKE: (0, 1), API_SASL_AUTHENTICATE: (0, 2)}


def test_api_versions_v0_advertise_the_sasl_versions_the_gateway_answers() -> None:
    body = ApiVersionResponse_v0(error_code=0, api_versions=[(0, 0, 11), (17, 0, 1), (36, 0, 5)]).encode()

    answer = decoded(
        ApiVersionResponse_v0,
        rewrite_response(API_API_VERSIONS, 0, CORRELATION + body, address=GATEWAY, api_versions=SASL),
    )

    assert answer.api_versions == [(0, 0, 11), (17, 0, 1), (36, 0, 2)]


def test_api_versions_v1_add_sasl_when_the_broker_lists_none_and_keep_the_throttle() -> None:
    body = ApiVersionResponse_v1(error_code=0, api_versions=[(0, 0, 11)], throttle_time_ms=3).encode()

    answer = decoded(
        ApiVersionResponse_v1,
        rewrite_response(API_API_VERSIONS, 1, CORRELATION + body, address=GATEWAY, api_versions=SASL),
    )

    assert answer.api_versions == [(0, 0, 11), (17, 0, 1), (36, 0, 2)]
    assert answer.throttle_time_ms == 3


def test_api_versions_v3_flexible_keep_entry_tags_and_the_trailing_fields() -> None:
    def answer(*entries: tuple[int, int, int]) -> bytes:
        listed = b"".join(struct.pack(">hhh", *e) + b"\x00" for e in entries)
        # header v0 (never tagged for ApiVersions), error, entries, throttle, a tagged field (supported features)
        return (
            CORRELATION
            + struct.pack(">h", 0)
            + bytes([len(entries) + 1])
            + listed
            + struct.pack(">i", 0)
            + b"\x01\x00\x01\x00"
        )

    patched = rewrite_response(
        API_API_VERSIONS, 3, answer((0, 0, 11), (36, 0, 2)), address=GATEWAY, api_versions=SASL
    )

    assert patched == answer((0, 0, 11), (36, 0, 2), (17, 0, 1))


def test_an_api_versions_error_is_passed_on_in_its_own_layout() -> None:
    # UNSUPPORTED_VERSION is answered in v0's layout whatever version was asked.
    body = ApiVersionResponse_v0(error_code=35, api_versions=[(18, 0, 3)]).encode()

    assert rewrite_response(API_API_VERSIONS, 3, CORRELATION + body, address=GATEWAY, api_versions=SASL) == (
        CORRELATION + body
    )


def test_other_answers_are_not_touched() -> None:
    payload = CORRELATION + b"anything at all"

    assert rewrite_response(0, 9, payload, address=GATEWAY) == payload


def test_a_truncated_answer_is_a_wire_error_not_a_wrong_rewrite() -> None:
    body = MetadataResponse_v0(brokers=[(1, "tansu", 9092)], topics=[]).encode()

    with pytest.raises(WireError):
        rewrite_response(API_METADATA, 0, CORRELATION + body[:9], address=GATEWAY)


def test_sasl_authenticate_v2_is_read_and_answered_in_the_flexible_layout() -> None:
    request = (
        struct.pack(">hhi", API_SASL_AUTHENTICATE, 2, 5)
        + struct.pack(">h", 3)
        + b"cli"  # client id: a classic string even in header v2
        + b"\x00"  # header tags
        + bytes([len(b"n,,n=u,r=abc") + 1])
        + b"n,,n=u,r=abc"
        + b"\x00"
    )

    header, token = read_sasl_authenticate(request)
    answer = sasl_authenticate_response(header, token=b"r=abcdef")

    assert (header.correlation_id, header.client_id, token) == (5, "cli", b"n,,n=u,r=abc")
    reader = Reader(answer)
    assert (reader.int32(), reader.uvarint(), reader.int16()) == (5, 0, 0)  # header with no tags, no error
    assert reader.string(flexible=True) is None
    assert reader.bytes_(flexible=True) == b"r=abcdef"
    assert (reader.int64(), reader.uvarint(), reader.rest()) == (0, 0, b"")  # no re-authentication


def test_a_request_header_gives_its_client_id_and_where_the_body_starts() -> None:
    request = struct.pack(">hhih", API_SASL_HANDSHAKE, 1, 9, -1) + struct.pack(">h", 13) + b"SCRAM-SHA-512"

    header = read_request_header(request)

    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (17, 1, 9, None)
    assert Reader(request, header.body).string(flexible=False) == "SCRAM-SHA-512"
