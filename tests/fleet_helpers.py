"""Helpers for fleet tests: a claimed fleet of unix-port devices with a release key,
firmware releases built from (a copy of) firmware/, and a device run on MicroPython."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.accounts import devices, households
from backend.runtime import Backend
from devtools.mpy import FIRMWARE, micropython_binary
from provisioning import releases
from provisioning.batch import Firmware, ProvisionedDevice, provision_batch

FAST_ACK_MS = 300
_LINE = re.compile(r"^(STATUS|OTA) (\S+)?(.*)$")


@dataclass
class Fleet:
    backend: Backend
    key: Ed25519PrivateKey  # the manufacturer's release key, made for this test
    devices: list[ProvisionedDevice]
    batch: str
    household_id: int


def make_fleet(backend: Backend, out: Path, count: int = 1,
               key: Ed25519PrivateKey | None = None) -> Fleet:
    key = key or Ed25519PrivateKey.generate()
    name = f"fleet-{secrets.token_hex(3)}"
    with backend.writer_sessions() as session, session.begin():
        made = provision_batch(session, backend.keyring, model="button", count=count,
                               out=out, coap_host="127.0.0.1", coap_port=backend.coap_port,
                               name=name, labels=False,
                               release_key=releases.public_key_hex(key),
                               # A fleet in the field on an older firmware: the tests'
                               # releases (0.2.0 and up) are updates for it.
                               firmware=Firmware("0.1.0"))
        household, _token = households.create(session, "Fleet household")
        household.max_orders_per_day = None
        household.hold_window_s = 0
        for device in made:
            claimed = devices.claim(session, household, device.claim_code)
            devices.configure_slot(session, claimed, 0, "DETERGENT-1L", 1)
        household_id = household.id
    return Fleet(backend, key, made, name, household_id)


def publish(fleet: Fleet, files: dict[str, bytes], version: str, build: int, **options) -> int:
    with fleet.backend.writer_sessions() as session, session.begin():
        done = releases.publish(session, fleet.key, model="button", version=version,
                                files=files, build=build, **options)
    return done.id


def run_device(bundle: Path, commands: list[str], env: dict | None = None,
               timeout: float = 120, heap: str | None = None) -> subprocess.CompletedProcess:
    """One boot of the device's firmware on the unix port, fed `commands`."""
    argv = [str(micropython_binary())]
    if heap:
        argv += ["-X", f"heapsize={heap}"]
    argv += [str(FIRMWARE / "main_unix.py"), str(bundle)]
    full_env = {**os.environ, "REPLENISH_ACK_TIMEOUT_MS": str(FAST_ACK_MS),
                "MICROPYPATH": ".frozen", **(env or {})}
    return subprocess.run(argv, input="".join(c + "\n" for c in commands) + "quit\n",
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def lines(done: subprocess.CompletedProcess, prefix: str) -> list[dict[str, str]]:
    """The `prefix` lines (STATUS, OTA) as {field: value} (+ "outcome" for OTA)."""
    found = []
    for line in done.stdout.splitlines():
        if not line.startswith(prefix + " "):
            continue
        words = line.split()[1:]
        fields = dict(w.split("=", 1) for w in words if "=" in w)
        if prefix == "OTA":
            fields["outcome"] = words[0]
        found.append(fields)
    return found


def variant(tmp_path: Path, name: str, changes: dict[str, str]) -> Path:
    """A copy of firmware/ with some modules replaced (a new release's sources)."""
    target = tmp_path / name
    for source in FIRMWARE.rglob("*.py"):
        rel = source.relative_to(FIRMWARE)
        if "__pycache__" in rel.parts:
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(source.read_bytes())
    for rel, text in changes.items():
        (target / rel).write_text(text)
    return target


class CorruptingRelay:
    """A loopback UDP relay between devices and the backend that flips one bit in the
    payload of one Block2 response: block `block` of the file whose path ends in
    `suffix` (damage in transit that CoAP over UDP would not notice)."""

    def __init__(self, backend_port: int, suffix: str, block: int):
        import socket
        import threading

        self._backend = ("127.0.0.1", backend_port)
        self._suffix, self._block = suffix, block
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.corrupted = 0
        self._device = None
        self._tokens: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CorruptingRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.front.close()
        self.back.close()

    def _run(self) -> None:
        import select

        from aiocoap import Message

        while not self._stop.is_set():
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            for sock in ready:
                data, addr = sock.recvfrom(2048)
                if sock is self.front:
                    self._device = addr
                    request = Message.decode(data)
                    block = request.opt.block2
                    if "/".join(request.opt.uri_path).endswith(self._suffix) and block \
                            and block.block_number == self._block:
                        self._tokens.add(request.token)
                    self.back.sendto(data, self._backend)
                elif self._device is not None:
                    response = Message.decode(data)
                    if response.token in self._tokens and response.payload:
                        self._tokens.discard(response.token)
                        damaged = bytearray(data)  # the payload ends the datagram
                        damaged[len(data) - len(response.payload) // 2] ^= 0x10
                        data = bytes(damaged)
                        self.corrupted += 1
                    self.front.sendto(data, self._device)
