"""The few parts of the Kafka wire protocol the test gateway reads and rewrites, nothing more.

Kafka frames are a big-endian int32 size and a payload. A request payload starts with api key,
api version, correlation id and client id (request header v1; flexible versions, KIP-482, add
tagged fields: header v2); a response payload starts with the correlation id (flexible versions add
tagged fields, response header v1, except ApiVersions, whose response header never has them).
Everything here is pure: bytes in, bytes out, so that unit tests can build any version's frame.

What is rewritten, and why: Metadata, FindCoordinator and DescribeCluster answers name the broker's
own address, which a client then dials directly, past the gateway. The gateway puts its own
address there, and copies every other byte of the answer unchanged. ApiVersions answers are patched
so that they advertise the SASL versions the gateway itself implements.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

API_METADATA = 3
API_FIND_COORDINATOR = 10
API_SASL_HANDSHAKE = 17
API_API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
API_DESCRIBE_CLUSTER = 60

ERROR_NONE = 0
ERROR_UNSUPPORTED_SASL_MECHANISM = 33
ERROR_ILLEGAL_SASL_STATE = 34
ERROR_SASL_AUTHENTICATION_FAILED = 58

#: The first flexible version (KIP-482: compact strings and arrays, tagged fields) of each API read here.
_FIRST_FLEXIBLE = {
    API_METADATA: 9,
    API_FIND_COORDINATOR: 3,
    API_API_VERSIONS: 3,
    API_SASL_AUTHENTICATE: 2,
    API_DESCRIBE_CLUSTER: 0,
}


class WireError(ValueError):
    """A frame that is not what its header says it is."""


def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether this version of the API uses compact types and tagged fields (only the APIs read here)."""
    first = _FIRST_FLEXIBLE.get(api_key)
    return first is not None and api_version >= first


class Reader:
    """Reads Kafka primitives from a payload, remembering where it is."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def _take(self, count: int) -> bytes:
        if count < 0 or self.offset + count > len(self.data):
            raise WireError(f"frame ends at {len(self.data)} bytes, wanted {count} more at {self.offset}")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def int8(self) -> int:
        value: int = struct.unpack(">b", self._take(1))[0]
        return value

    def int16(self) -> int:
        value: int = struct.unpack(">h", self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack(">i", self._take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack(">q", self._take(8))[0]
        return value

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise WireError("unsigned varint longer than 5 bytes")

    def string(self, *, flexible: bool) -> str | None:
        """A (nullable) string: int16 length, or in flexible versions uvarint length + 1 (0 is null)."""
        length = self.uvarint() - 1 if flexible else self.int16()
        if length < 0:
            return None
        return self._take(length).decode("utf-8")

    def bytes_(self, *, flexible: bool) -> bytes | None:
        """(Nullable) bytes: int32 length, or in flexible versions uvarint length + 1."""
        length = self.uvarint() - 1 if flexible else self.int32()
        if length < 0:
            return None
        return self._take(length)

    def array_length(self, *, flexible: bool) -> int:
        """An array's element count (-1 for a null array)."""
        return self.uvarint() - 1 if flexible else self.int32()

    def tagged_fields(self) -> None:
        """Skip a tagged-field section; the caller copies the bytes if it keeps them."""
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def rest(self) -> bytes:
        return self.data[self.offset :]


class Writer:
    """Builds a payload from Kafka primitives."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def raw(self, data: bytes) -> Writer:
        self.buffer += data
        return self

    def int8(self, value: int) -> Writer:
        return self.raw(struct.pack(">b", value))

    def int16(self, value: int) -> Writer:
        return self.raw(struct.pack(">h", value))

    def int32(self, value: int) -> Writer:
        return self.raw(struct.pack(">i", value))

    def int64(self, value: int) -> Writer:
        return self.raw(struct.pack(">q", value))

    def uvarint(self, value: int) -> Writer:
        while value >= 0x80:
            self.buffer.append((value & 0x7F) | 0x80)
            value >>= 7
        self.buffer.append(value)
        return self

    def string(self, value: str | None, *, flexible: bool) -> Writer:
        encoded = None if value is None else value.encode("utf-8")
        return self.bytes_(encoded, flexible=flexible, short=True)

    def bytes_(self, value: bytes | None, *, flexible: bool, short: bool = False) -> Writer:
        """(Nullable) bytes; `short` for strings, whose classic length is an int16."""
        if flexible:
            return self.uvarint(0 if value is None else len(value) + 1).raw(value or b"")
        length = -1 if value is None else len(value)
        (self.int16 if short else self.int32)(length)
        return self.raw(value or b"")

    def array_length(self, count: int, *, flexible: bool) -> Writer:
        return self.uvarint(count + 1) if flexible else self.int32(count)

    def no_tagged_fields(self) -> Writer:
        return self.uvarint(0)

    def build(self) -> bytes:
        return bytes(self.buffer)


@dataclass(frozen=True)
class RequestHeader:
    """The start of a request payload; `body` is where the request's own fields begin."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: int


def peek_request(payload: bytes) -> tuple[int, int, int]:
    """Api key, api version and correlation id of a request: all a relay needs to know of it."""
    if len(payload) < 8:
        raise WireError(f"a request header has at least 8 bytes, got {len(payload)}")
    api_key, api_version, correlation_id = struct.unpack(">hhi", payload[:8])
    return api_key, api_version, correlation_id


def read_request_header(payload: bytes) -> RequestHeader:
    """The whole request header; its client id is a classic nullable string in every version."""
    api_key, api_version, correlation_id = peek_request(payload)
    reader = Reader(payload, 8)
    client_id = reader.string(flexible=False)
    if is_flexible(api_key, api_version):
        reader.tagged_fields()
    return RequestHeader(api_key, api_version, correlation_id, client_id, reader.offset)


def response_header(correlation_id: int, *, flexible: bool) -> Writer:
    """A response's header: its correlation id, and an empty tag section in flexible versions."""
    writer = Writer().int32(correlation_id)
    return writer.no_tagged_fields() if flexible else writer


def _skip_response_header(reader: Reader, api_key: int, api_version: int) -> None:
    reader.int32()
    if api_key != API_API_VERSIONS and is_flexible(api_key, api_version):
        reader.tagged_fields()


@dataclass(frozen=True)
class Address:
    """Where clients must connect: the gateway's host and port."""

    host: str
    port: int


#: The responses `rewrite_response` changes; the gateway notes requests of these keys.
REWRITTEN_APIS = frozenset({API_METADATA, API_FIND_COORDINATOR, API_DESCRIBE_CLUSTER, API_API_VERSIONS})


def rewrite_response(
    api_key: int,
    api_version: int,
    payload: bytes,
    *,
    address: Address,
    api_versions: Mapping[int, tuple[int, int]] | None = None,
) -> bytes:
    """The response with every broker address replaced by `address`, and ApiVersions patched by
    `api_versions` (api key → (min, max) the gateway answers itself); others are returned as they are."""
    if api_key == API_METADATA:
        return _rewrite_metadata(api_version, payload, address)
    if api_key == API_FIND_COORDINATOR:
        return _rewrite_find_coordinator(api_version, payload, address)
    if api_key == API_DESCRIBE_CLUSTER:
        return _rewrite_describe_cluster(api_version, payload, address)
    if api_key == API_API_VERSIONS and api_versions:
        return _patch_api_versions(api_version, payload, api_versions)
    return payload


def _copy_node(reader: Reader, writer: Writer, address: Address, *, flexible: bool) -> None:
    """Copy `host port` at the reader to the writer, replaced by the gateway's address."""
    reader.string(flexible=flexible)
    reader.int32()
    writer.string(address.host, flexible=flexible).int32(address.port)


def _rewrite_metadata(version: int, payload: bytes, address: Address) -> bytes:
    # brokers => node_id host port [rack (v1+)] [tags (v9+)], after the header and (v3+) throttle_time_ms.
    flexible = is_flexible(API_METADATA, version)
    reader = Reader(payload)
    _skip_response_header(reader, API_METADATA, version)
    if version >= 3:
        reader.int32()
    writer = Writer().raw(payload[: reader.offset])
    count = reader.array_length(flexible=flexible)
    writer.array_length(count, flexible=flexible)
    for _ in range(max(count, 0)):
        writer.int32(reader.int32())
        _copy_node(reader, writer, address, flexible=flexible)
        start = reader.offset
        if version >= 1:
            reader.string(flexible=flexible)
        if flexible:
            reader.tagged_fields()
        writer.raw(payload[start : reader.offset])
    return writer.raw(reader.rest()).build()


def _rewrite_find_coordinator(version: int, payload: bytes, address: Address) -> bytes:
    flexible = is_flexible(API_FIND_COORDINATOR, version)
    reader = Reader(payload)
    _skip_response_header(reader, API_FIND_COORDINATOR, version)
    if version >= 1:
        reader.int32()  # throttle_time_ms
    if version >= 4:
        # coordinators => key node_id host port error_code error_message tags
        writer = Writer().raw(payload[: reader.offset])
        count = reader.array_length(flexible=True)
        writer.array_length(count, flexible=True)
        for _ in range(max(count, 0)):
            start = reader.offset
            reader.string(flexible=True)
            node_id = reader.int32()
            writer.raw(payload[start : reader.offset])
            _copy_node_if_known(reader, writer, address, node_id, payload, flexible=True)
            start = reader.offset
            reader.int16()
            reader.string(flexible=True)
            reader.tagged_fields()
            writer.raw(payload[start : reader.offset])
        return writer.raw(reader.rest()).build()
    # error_code [error_message (v1+)] node_id host port [tags (v3)]
    reader.int16()
    if version >= 1:
        reader.string(flexible=flexible)
    node_id = reader.int32()
    writer = Writer().raw(payload[: reader.offset])
    _copy_node_if_known(reader, writer, address, node_id, payload, flexible=flexible)
    return writer.raw(reader.rest()).build()


def _copy_node_if_known(
    reader: Reader, writer: Writer, address: Address, node_id: int, payload: bytes, *, flexible: bool
) -> None:
    # No coordinator yet (node -1, host "", port -1): the client must ask again, not dial the gateway.
    if node_id >= 0:
        _copy_node(reader, writer, address, flexible=flexible)
        return
    start = reader.offset
    reader.string(flexible=flexible)
    reader.int32()
    writer.raw(payload[start : reader.offset])


def _rewrite_describe_cluster(version: int, payload: bytes, address: Address) -> bytes:
    # throttle error_code error_message [endpoint_type (v1+)] cluster_id controller_id
    # brokers => broker_id host port rack [is_fenced (v2+)] tags; every version is flexible.
    reader = Reader(payload)
    _skip_response_header(reader, API_DESCRIBE_CLUSTER, version)
    reader.int32()
    reader.int16()
    reader.string(flexible=True)
    if version >= 1:
        reader.int8()
    reader.string(flexible=True)
    reader.int32()
    writer = Writer().raw(payload[: reader.offset])
    count = reader.array_length(flexible=True)
    writer.array_length(count, flexible=True)
    for _ in range(max(count, 0)):
        writer.int32(reader.int32())
        _copy_node(reader, writer, address, flexible=True)
        start = reader.offset
        reader.string(flexible=True)
        if version >= 2:
            reader.int8()
        reader.tagged_fields()
        writer.raw(payload[start : reader.offset])
    return writer.raw(reader.rest()).build()


def _patch_api_versions(version: int, payload: bytes, overrides: Mapping[int, tuple[int, int]]) -> bytes:
    # error_code api_keys => api_key min_version max_version [tags (v3+)], then the rest as it is.
    flexible = is_flexible(API_API_VERSIONS, version)
    reader = Reader(payload)
    _skip_response_header(reader, API_API_VERSIONS, version)
    if reader.int16() != ERROR_NONE:
        # An error answer (say, an unsupported version) is in v0's layout whatever was asked: pass it on.
        return payload
    writer = Writer().raw(payload[: reader.offset])
    entries: list[tuple[int, int, int, bytes]] = []
    for _ in range(max(reader.array_length(flexible=flexible), 0)):
        api_key, low, high = reader.int16(), reader.int16(), reader.int16()
        start = reader.offset
        if flexible:
            reader.tagged_fields()
        entries.append((api_key, low, high, payload[start : reader.offset]))
    listed = {entry[0] for entry in entries}
    patched = [
        (key, *overrides[key], tags) if key in overrides else (key, low, high, tags)
        for key, low, high, tags in entries
    ]
    patched += [
        (key, low, high, b"\x00" if flexible else b"")
        for key, (low, high) in overrides.items()
        if key not in listed
    ]
    writer.array_length(len(patched), flexible=flexible)
    for key, low, high, tags in patched:
        writer.int16(key).int16(low).int16(high).raw(tags)
    return writer.raw(reader.rest()).build()


def read_sasl_handshake(payload: bytes) -> tuple[RequestHeader, str]:
    """A SaslHandshake request (v0, v1: never flexible): its header and the mechanism asked for."""
    header = read_request_header(payload)
    mechanism = Reader(payload, header.body).string(flexible=False)
    return header, mechanism or ""


def sasl_handshake_response(correlation_id: int, error_code: int, mechanisms: list[str]) -> bytes:
    writer = response_header(correlation_id, flexible=False).int16(error_code)
    writer.array_length(len(mechanisms), flexible=False)
    for mechanism in mechanisms:
        writer.string(mechanism, flexible=False)
    return writer.build()


def read_sasl_authenticate(payload: bytes) -> tuple[RequestHeader, bytes]:
    """A SaslAuthenticate request (v0-v2): its header and the SASL token it carries."""
    header = read_request_header(payload)
    flexible = is_flexible(API_SASL_AUTHENTICATE, header.api_version)
    token = Reader(payload, header.body).bytes_(flexible=flexible)
    return header, token or b""


def sasl_authenticate_response(
    header: RequestHeader,
    *,
    error_code: int = ERROR_NONE,
    error_message: str | None = None,
    token: bytes = b"",
) -> bytes:
    """The answer to a SaslAuthenticate request in its version; a session lifetime of 0 (no re-authentication)."""
    flexible = is_flexible(API_SASL_AUTHENTICATE, header.api_version)
    writer = response_header(header.correlation_id, flexible=flexible).int16(error_code)
    writer.string(error_message, flexible=flexible).bytes_(token, flexible=flexible)
    if header.api_version >= 1:
        writer.int64(0)
    if flexible:
        writer.no_tagged_fields()
    return writer.build()
