"""A secured Kafka listener for tests: TLS (mutual if asked) and SASL SCRAM in front of a plaintext broker.

The embedded broker (Tansu) speaks only plaintext, so without this the services' SASL_SSL and
mutual-TLS client settings could be tried only where Docker runs a real Apache Kafka. The gateway
terminates TLS with Python's `ssl` (refusing clients without a certificate of the trusted CA when
mutual TLS is on), performs the Kafka SASL exchange server side (SaslHandshake v0/v1, then
SaslAuthenticate v0-v2 or v0's bare tokens; SCRAM by `scramp`), and then relays the Kafka protocol
frame by frame to the broker, byte for byte except the broker addresses in Metadata,
FindCoordinator and DescribeCluster answers, which it replaces with its own so that clients keep
coming back through it (`devstack.kafka_wire`).

A test gateway, not a product component: it authenticates, it does not authorise (Kafka's ACLs
are not emulated), and it relays to one broker (a single-node cluster). It runs its own event loop
in a thread, so that synchronous fixtures can start it and a test's loop never stalls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from pydantic import SecretStr
from scramp import ScramException, ScramMechanism

from devstack.kafka_wire import (
    API_API_VERSIONS,
    API_SASL_AUTHENTICATE,
    API_SASL_HANDSHAKE,
    ERROR_NONE,
    ERROR_SASL_AUTHENTICATION_FAILED,
    ERROR_UNSUPPORTED_SASL_MECHANISM,
    REWRITTEN_APIS,
    Address,
    RequestHeader,
    WireError,
    peek_request,
    read_sasl_authenticate,
    read_sasl_handshake,
    rewrite_response,
    sasl_authenticate_response,
    sasl_handshake_response,
)
from devstack.tls import Pki

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
#: Kafka's `sasl.server.max.receive.size`: what an unauthenticated client may send in one frame.
MAX_UNAUTHENTICATED_FRAME = 512 * 1024
#: Kafka's `socket.request.max.bytes`.
MAX_REQUEST_FRAME = 100 * 1024 * 1024
#: The SASL versions the gateway answers itself, advertised in place of the broker's.
SASL_API_VERSIONS = {API_SASL_HANDSHAKE: (0, 1), API_SASL_AUTHENTICATE: (0, 2)}
#: What Kafka says to a failed SCRAM exchange; the same for an unknown user and a wrong password.
AUTHENTICATION_FAILED = (
    "Authentication failed during authentication due to invalid credentials with SASL mechanism {}"
)

Stage = Literal["tls", "sasl", "protocol", "upstream"]


@dataclass(frozen=True)
class Refusal:
    """A connection the gateway closed, and why (tests read these; nothing secret is in them)."""

    stage: Stage
    reason: str


class GatewayStartError(RuntimeError):
    """The gateway could not listen."""


def server_ssl_context(pki: Pki, *, mutual: bool = False) -> ssl.SSLContext:
    """The listener's TLS: the server certificate of `pki`; with `mutual`, a client certificate signed by its CA is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if mutual:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


class KafkaGateway:
    """A loopback listener that secures one plaintext Kafka-protocol broker (`upstream`, `host:port`).

    `ssl_context` turns TLS on (see `server_ssl_context`); `scram_users` (name → password) turns
    SASL on with `mechanism`. With both: SASL_SSL; with TLS alone: SSL (mutual if the context
    requires client certificates); with SASL alone: SASL_PLAINTEXT.
    """

    def __init__(
        self,
        upstream: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        scram_users: Mapping[str, SecretStr] | None = None,
        mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if "," in upstream:
            raise ValueError(f"the gateway relays to one broker, not {upstream!r}")
        upstream_host, _, upstream_port = upstream.rpartition(":")
        self._upstream = (upstream_host, int(upstream_port))
        self._ssl_context = ssl_context
        self._mechanism = mechanism
        self._scram = ScramMechanism(mechanism)
        # Only what the server side of SCRAM keeps (salt, stored key, server key, iterations), never the password.
        self._credentials = {
            name: self._scram.make_auth_info(password.get_secret_value())
            for name, password in (scram_users or {}).items()
        }
        self._sasl = scram_users is not None
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._refusals: list[Refusal] = []
        self._principals: list[str] = []

    @property
    def bootstrap(self) -> str:
        """`host:port` of the listener; only known once started."""
        if self._port is None:
            raise RuntimeError("the gateway is not running")
        return f"{self._host}:{self._port}"

    def refusals(self) -> tuple[Refusal, ...]:
        """Every connection refused so far, oldest first."""
        with self._lock:
            return tuple(self._refusals)

    def principals(self) -> tuple[str, ...]:
        """Who every accepted connection was, as Kafka names principals (`User:billing-test`, `User:CN=…`)."""
        with self._lock:
            return tuple(self._principals)

    def start(self) -> str:
        """Listen, in a thread of its own, and return the bootstrap string."""
        if self._thread is not None:
            return self.bootstrap
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="kafka-gateway", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), loop).result(START_TIMEOUT_SECONDS)
        except Exception as error:
            self.stop()
            raise GatewayStartError(f"the Kafka gateway could not listen on {self._host}: {error}") from error
        return self.bootstrap

    def stop(self) -> None:
        """Close the listener and every connection, and end the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(START_TIMEOUT_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_SECONDS)
        loop.close()
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._requested_port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except WireError as error:
            # Among others, an answer that cannot be rewritten: passed on as it is, it would send
            # the client past the gateway. Refuse loudly instead.
            self._refuse("protocol", str(error))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client or the broker hung up; nothing to refuse
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        principal = "User:ANONYMOUS"
        if self._ssl_context is not None:
            try:
                await writer.start_tls(self._ssl_context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_SECONDS)
            except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as error:
                self._refuse("tls", _tls_failure(error))
                return
            principal = _certificate_principal(writer) or principal
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError as error:
            self._refuse(
                "upstream", f"the broker at {self._upstream[0]}:{self._upstream[1]} is unreachable: {error}"
            )
            return
        try:
            if self._sasl:
                authenticated = await self._authenticate(reader, writer, up_reader, up_writer)
                if authenticated is None:
                    return
                principal = authenticated
            with self._lock:
                self._principals.append(principal)
            await self._relay(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> str | None:
        """Run Kafka's SASL exchange; the principal once authenticated, None when refused (and closed)."""
        handshake: RequestHeader | None = None
        exchange: _ScramExchange | None = None
        while True:
            payload = await _read_frame(reader, MAX_UNAUTHENTICATED_FRAME)
            if payload is None:
                self._refuse("sasl", "the client closed the connection before authenticating")
                return None
            if exchange is not None and handshake is not None and handshake.api_version == 0:
                # SaslHandshake v0: the SCRAM messages follow as bare frames, and a failure just closes.
                reply = exchange.step(payload)
                if reply is None:
                    self._refuse("sasl", exchange.failure)
                    return None
                await _write_frame(writer, reply)
                if exchange.done:
                    return exchange.principal
                continue
            api_key, api_version, _ = peek_request(payload)
            if api_key == API_API_VERSIONS and handshake is None:
                await _write_frame(up_writer, payload)
                answer = await _read_frame(up_reader, None)
                if answer is None:
                    self._refuse("upstream", "the broker closed the connection")
                    return None
                await _write_frame(writer, self._rewrite(api_key, api_version, answer))
            elif api_key == API_SASL_HANDSHAKE and handshake is None:
                header, mechanism = read_sasl_handshake(payload)
                if mechanism != self._mechanism:
                    self._refuse("sasl", f"mechanism {mechanism!r} is not enabled ({self._mechanism} is)")
                    await _write_frame(
                        writer,
                        sasl_handshake_response(
                            header.correlation_id, ERROR_UNSUPPORTED_SASL_MECHANISM, [self._mechanism]
                        ),
                    )
                    return None
                await _write_frame(
                    writer, sasl_handshake_response(header.correlation_id, ERROR_NONE, [self._mechanism])
                )
                handshake, exchange = header, _ScramExchange(self._scram, self._credentials)
            elif api_key == API_SASL_AUTHENTICATE and exchange is not None:
                header, token = read_sasl_authenticate(payload)
                reply = exchange.step(token)
                if reply is None:
                    self._refuse("sasl", exchange.failure)
                    message = AUTHENTICATION_FAILED.format(self._mechanism)
                    await _write_frame(
                        writer,
                        sasl_authenticate_response(
                            header, error_code=ERROR_SASL_AUTHENTICATION_FAILED, error_message=message
                        ),
                    )
                    return None
                await _write_frame(writer, sasl_authenticate_response(header, token=reply))
                if exchange.done:
                    return exchange.principal
            else:
                self._refuse("sasl", f"request api_key={api_key} v{api_version} before authentication")
                return None

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Pass frames both ways until either side closes; answers that name brokers name the gateway."""
        # Correlation id → (api key, version) of requests whose answers are rewritten. A dict, not a
        # queue: a Produce with acks=0 has no answer.
        pending: dict[int, tuple[int, int]] = {}

        async def requests() -> None:
            while (payload := await _read_frame(reader, MAX_REQUEST_FRAME)) is not None:
                api_key, api_version, correlation_id = peek_request(payload)
                if api_key in REWRITTEN_APIS:
                    pending[correlation_id] = (api_key, api_version)
                await _write_frame(up_writer, payload)

        async def responses() -> None:
            while (payload := await _read_frame(up_reader, None)) is not None:
                correlation_id = struct.unpack(">i", payload[:4])[0]
                known = pending.pop(correlation_id, None)
                if known is not None:
                    payload = self._rewrite(*known, payload)
                await _write_frame(writer, payload)

        await _first_to_finish(requests(), responses())

    def _rewrite(self, api_key: int, api_version: int, payload: bytes) -> bytes:
        assert self._port is not None
        return rewrite_response(
            api_key,
            api_version,
            payload,
            address=Address(self._host, self._port),
            api_versions=SASL_API_VERSIONS if self._sasl else None,
        )

    def _refuse(self, stage: Stage, reason: str) -> None:
        log.info("kafka_gateway_refused stage=%s reason=%s", stage, reason)
        with self._lock:
            self._refusals.append(Refusal(stage, reason))


class _ScramExchange:
    """The server side of one SCRAM exchange: client-first → server-first, client-final → server-final."""

    def __init__(
        self, mechanism: ScramMechanism, credentials: Mapping[str, tuple[bytes, bytes, bytes, int]]
    ) -> None:
        self.username: str | None = None
        self.done = False
        self.failure = ""

        def auth_info(username: str) -> tuple[bytes, bytes, bytes, int] | None:
            self.username = username
            return credentials.get(username)

        self._server = mechanism.make_server(auth_info)
        self._first = True

    @property
    def principal(self) -> str:
        return f"User:{self.username}"

    def step(self, token: bytes) -> bytes | None:
        """The reply to the client's next message, or None when authentication failed (`failure` says why)."""
        try:
            if self._first:
                self._first = False
                self._server.set_client_first(token.decode("utf-8"))
                reply: str = self._server.get_server_first()
                return reply.encode("utf-8")
            self._server.set_client_final(token.decode("utf-8"))
            reply = self._server.get_server_final()
        except (ScramException, UnicodeDecodeError, ValueError, KeyError) as error:
            self.failure = f"SCRAM authentication of {self.username!r} failed: {error}"
            return None
        self.done = True
        return reply.encode("utf-8")


async def _read_frame(reader: asyncio.StreamReader, limit: int | None) -> bytes | None:
    """One frame's payload, or None when the peer closed between frames."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or (limit is not None and size > limit):
        raise WireError(f"a frame of {size} bytes (at most {limit})")
    return await reader.readexactly(size)


async def _write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.writelines([struct.pack(">i", len(payload)), payload])
    await writer.drain()


async def _first_to_finish(*coroutines: Awaitable[None]) -> None:
    """Run the pumps until one ends (a side closed or failed); cancel the rest; raise what the first raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None and not isinstance(error, ConnectionError | asyncio.IncompleteReadError):
            raise error


def _tls_failure(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    return f"TLS handshake failed: {type(error).__name__}: {error}"


def _certificate_principal(writer: asyncio.StreamWriter) -> str | None:
    """`User:CN=…` of a verified client certificate, as Kafka's default SSL principal builder names it."""
    certificate = writer.get_extra_info("peercert")
    if not certificate:
        return None
    names = [
        f"{_RDN_NAMES.get(key, key)}={value}" for rdn in certificate.get("subject", ()) for key, value in rdn
    ]
    return "User:" + ",".join(names)


_RDN_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "countryName": "C",
}
