"""The Procountor emulator as a separate process, for tests, `make run` and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
