"""Real outside programs the tests need: find them, install them, or fail under CI.

`make test` runs as root on a fresh machine and installs Debian packages itself.
Under CI=true nothing may be skipped: when a program cannot be had, the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
import threading

import pytest

_apt_lock = threading.Lock()
_apt_updated = False
# Test processes (pytest-xdist workers) install one at a time: dpkg takes one at a time.
_APT_LOCK_FILE = "/tmp/replenish-tests-apt.lock"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str):
    if in_ci():
        pytest.fail(f"CI requires it: {reason}")
    pytest.skip(reason)


def apt_install(*packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable(f"cannot install {' '.join(packages)}: need root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _apt_lock, _across_processes(_APT_LOCK_FILE):
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-q"], check=False, env=env,
                           capture_output=True, timeout=600)
            _apt_updated = True
        done = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                               *packages], env=env, capture_output=True, text=True,
                              timeout=900)
    if done.returncode != 0:
        unavailable(f"apt-get install {' '.join(packages)} failed: {done.stderr[-500:]}")


@contextlib.contextmanager
def _across_processes(path: str):
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def program(name: str, package: str, extra_dirs: str = "") -> str:
    """Path of `name`, installing Debian `package` when it is missing."""
    for attempt in range(2):
        found = shutil.which(name)
        if found is None and extra_dirs:
            matches = sorted(glob.glob(os.path.join(extra_dirs, name)))
            found = matches[-1] if matches else None
        if found:
            return found
        if attempt == 0:
            apt_install(package)
    unavailable(f"{name} not found even after installing {package}")
    raise AssertionError("unreachable")
