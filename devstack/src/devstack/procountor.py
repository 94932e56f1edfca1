"""The Procountor emulator as a separate process, for tests, `make run` and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from devstack.broker import free_port

CLIENT_ID = "billing-backbone-local"
CLIENT_SECRET = "local-client-secret"  # noqa: S105 - the emulator's published local default
API_KEY = "local-api-key"


class EmulatorProcess:
    """`python -m procountor_emulator` on a free port; start, stop, kill and start again on the same port.

    A restarted emulator has forgotten everything (its state lives in memory), as a real outage
    would not: tests of an outage use fresh customers.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        rate_limit: int = 20,
        latency_ms: float = 0.0,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self._args = [
            sys.executable, "-m", "procountor_emulator", "--host", "127.0.0.1", "--port", str(self.port),
            "--rate-limit", str(rate_limit), "--latency-ms", str(latency_ms), "--log-level", "warning",
        ]  # fmt: skip
        self._env = {**os.environ, **(env or {})}
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 20.0) -> EmulatorProcess:
        # Every start hands out ids of its own: a restarted emulator reuses none (Procountor never does).
        first_id = 1000 + int(time.time() * 1000) % 1_000_000_000
        args = [*self._args, "--first-id", str(first_id)]
        if self._log_path is not None:
            self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            args,
            env=self._env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Procountor emulator exited with {self._process.returncode}")
            try:
                if httpx.get(f"{self.api_url}/status", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("the Procountor emulator did not start")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL); the port is free again afterwards."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the emulator's own endpoints (no token, no rate limit) ---

    def inspect(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_emulator{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Procountor API itself, as finance would from its UI (one token per call)."""
        token = httpx.post(
            f"{self.api_url}/oauth/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                  "client_secret": CLIENT_SECRET, "api_key": API_KEY},
            timeout=10,
        ).json()["access_token"]  # fmt: skip
        response = httpx.request(
            method,
            f"{self.api_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()


class SyncReplica:
    """One `procountor-sync serve` process that only delivers and polls (no Kafka intake).

    Real replicas for tests that kill one (SIGKILL) and for the benchmark; `settings` are
    `PROCOUNTOR_SYNC_*` values without the prefix, e.g. `{"DELIVERY_LEASE_SECONDS": "2"}`.
    """

    def __init__(
        self,
        *,
        database_url: str,
        bootstrap_servers: str,
        enable_idempotence: bool,
        emulator: EmulatorProcess,
        log: Path,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROCOUNTOR_SYNC_")}
        values = {
            "RUN_CONSUMERS": "false",
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "KAFKA_ENABLE_IDEMPOTENCE": str(enable_idempotence).lower(),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "PROCOUNTOR_BASE_URL": emulator.api_url,
            "PROCOUNTOR_CLIENT_ID": CLIENT_ID,
            "PROCOUNTOR_CLIENT_SECRET": CLIENT_SECRET,
            "PROCOUNTOR_API_KEY": API_KEY,
            "LOG_FORMAT": "json",
            **(settings or {}),
        }
        env |= {f"PROCOUNTOR_SYNC_{k}": v for k, v in values.items()}
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "procountor-sync"), "serve"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"procountor-sync exited with {self.process.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError("procountor-sync did not become ready")

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease released, the HTTP connection to Procountor just drops."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
