"""A real browser for tests: Debian's Chromium, driven by Playwright for Python.

Playwright's own browser download cannot work where only the package registries are reachable,
so the browser is Debian's `chromium`, installed with apt when it is missing (CI runs as root),
and Playwright drives it through `executable_path`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

#: Where Debian's package puts the browser.
CHROMIUM = Path("/usr/bin/chromium")
#: Headless in a container: no sandbox (no user namespaces), no GPU, nothing fetched in the background.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


class NoBrowserError(RuntimeError):
    """Chromium is not installed and could not be installed here."""


def chromium_executable() -> str:
    """The path of Chromium; installs Debian's `chromium` with apt-get when it is missing."""
    found = os.environ.get("CHROMIUM_PATH") or (
        str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    )
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise NoBrowserError(
            "no chromium and no apt-get to install it: install chromium or set CHROMIUM_PATH"
        )
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise NoBrowserError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    if not CHROMIUM.exists():
        raise NoBrowserError(f"apt-get installed chromium, but {CHROMIUM} is not there")
    return str(CHROMIUM)
