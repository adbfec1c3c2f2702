"""The simulated chip's setup access point listens on a port of the host chosen for each
boot (devtools/esp32sim/harness.py, `free_port`). A port probed free in the ephemeral
range can be handed to another worker's socket (a backend's web server, a test's HTTP
server) before the firmware binds it; the firmware's bind then fails, or the phone
posts its form to that other server. Here each boot gets a free port below the
ephemeral range instead, where the kernel hands out no port on its own."""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path

import pytest

_LOWEST = 10_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def port_below_the_ephemeral_range(fallback):
    """A free TCP port on 127.0.0.1 that no other socket gets by binding port 0."""
    low = _ephemeral_low()
    if low - _LOWEST < 1000:  # no room below the range here: probe as before
        return fallback()
    for _ in range(100):
        port = random.randrange(_LOWEST, low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # someone's own fixed port: another one
            return port
    return fallback()


@pytest.fixture(autouse=True)
def _setup_access_point_ports(monkeypatch):
    harness = sys.modules.get("devtools.esp32sim.harness")
    if harness is not None:
        fallback = harness.free_port
        monkeypatch.setattr(harness, "free_port",
                            lambda: port_below_the_ephemeral_range(fallback))
