"""What the figures were measured on, and the process's memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path

MIB = 1024 * 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(*, postgres_version: str, broker_version: str) -> dict[str, str]:
    """The machine and the software under test, as short strings."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    versions = {
        name: _version(name)
        for name in ("aiokafka", "faststream", "sqlalchemy", "asyncpg", "pydantic", "pydantic-core")
    }
    return {
        "cpu": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "ram": f"{_meminfo_kib('MemTotal') / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "postgresql": postgres_version,
        "broker": broker_version,
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "commit": _git_commit(),
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def _git_commit() -> str:
    """HEAD, and the source files changed on top of it: the figures belong to the working tree measured."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "contracts", "runtime", "services", "devstack"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted(line[3:] for line in status if line.endswith(".py") and "/tests/" not in line)
    return f"{head} + uncommitted: {', '.join(changed)}" if changed else head


def _meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def rss_bytes() -> int:
    """Resident set size of this process now (Linux: /proc/self/statm)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def lifetime_peak_rss_bytes() -> int:
    """ru_maxrss of this process (Linux reports KiB): the peak since it started."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (VmHWM) so that a phase's own peak can be read; False if refused."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """VmHWM: the peak resident set size since start or since `reset_peak_rss`."""
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
