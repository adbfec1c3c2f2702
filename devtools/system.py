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


def npm_package_file(package: str, relative: str, into: str) -> str:
    """Path of `relative` inside npm `package` (e.g. axe-core's axe.min.js), installed
    into the folder `into` with the machine's npm when it is not there yet."""
    path = os.path.join(into, "node_modules", package.split("@")[0], relative)
    if os.path.exists(path):
        return path
    npm = shutil.which("npm") or (apt_install("npm") or shutil.which("npm"))
    if npm is None:
        unavailable("npm not found even after installing it")
    os.makedirs(into, exist_ok=True)
    with _across_processes(os.path.join(into, ".lock")):
        if not os.path.exists(path):
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent",
                                   "--prefix", into, package], capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0 or not os.path.exists(path):
                unavailable(f"npm install {package} failed: {done.stderr[-500:]}")
    return path
