"""Envelope encryption of device keys under a key-encryption key (KEK).

Device keys live in the database only wrapped with AES-256-GCM under the KEK; the
KEK comes from REPLENISH_KEK (hex) or a file readable by its owner only, never from
the database. The device id is bound in as associated data, so a wrapped key copied
onto another device row does not unwrap.

Wrapped-key formats (first byte):

- 0x01  nonce(12) | ciphertext+tag            (walking skeleton; still read)
- 0x10  kek id(4) | nonce(12) | ciphertext+tag (written now)

The kek id is the first 4 bytes of SHA-256("replenish/kek-id/v1" | KEK): it names
the KEK a key is wrapped under without revealing anything about it, so a keyring
holding two KEKs (the current one and, during a rotation, the previous one) picks the
right one at once. See provisioning/kek_rotation.py for the rotation itself.

A keyring loaded from files re-reads them when it meets a kek id it does not hold:
a running ingest process picks up a rotated KEK without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.config import Settings
from backend.errors import ConfigError

log = logging.getLogger(__name__)

_FORMAT_V1 = b"\x01"
_FORMAT_KEK_ID = b"\x10"
_NONCE_BYTES = 12
_GCM_TAG_BYTES = 16
KEK_BYTES = 32
KEK_ID_BYTES = 4
PREVIOUS_SUFFIX = ".previous"  # <kek file>.previous: the KEK before a rotation
_RELOAD_BACKOFF_S = 1.0  # a failed re-read of the KEK files is retried after this

KekPair = tuple[bytes, bytes | None]  # (current, previous or None)


def kek_id(kek: bytes) -> bytes:
    return hashlib.sha256(b"replenish/kek-id/v1" + kek).digest()[:KEK_ID_BYTES]


def _aad(device_id: str) -> bytes:
    return b"replenish/device-key/v1/" + device_id.encode()


class Keyring:
    """The current KEK (wraps) and optionally the previous one (still unwraps)."""

    def __init__(self, kek: bytes, previous: bytes | None = None,
                 reload: Callable[[], KekPair] | None = None):
        self._install(kek, previous)
        self._reload = reload
        self._reload_lock = threading.Lock()
        self._failed_reload_at = float("-inf")
        # Unwrapping costs an AES-GCM call; ingest asks for the same keys over and over.
        # The cache key includes the wrapped bytes, so a re-wrapped or rotated key is a
        # new entry and never a stale answer.
        self.unwrap = lru_cache(maxsize=65536)(self._unwrap)

    def _install(self, kek: bytes, previous: bytes | None) -> None:
        for value in (kek, previous):
            if value is not None and len(value) != KEK_BYTES:
                raise ConfigError("the key-encryption key must be 32 bytes")
        keks = {kek_id(kek): AESGCM(kek)}
        if previous is not None:
            keks.setdefault(kek_id(previous), AESGCM(previous))
        # One attribute, swapped whole: readers in other threads see old or new, never half.
        self._state = (kek_id(kek), keks)

    @property
    def current_id(self) -> bytes:
        return self._state[0]

    @property
    def kek_count(self) -> int:
        return len(self._state[1])

    def holds(self, kid: bytes) -> bool:
        return kid in self._state[1]

    def wrap(self, device_id: str, key: bytes) -> bytes:
        current, keks = self._state
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return (_FORMAT_KEK_ID + current + nonce
                + keks[current].encrypt(nonce, key, _aad(device_id)))

    @staticmethod
    def kek_id_of(wrapped: bytes) -> bytes | None:
        """The kek id a wrapped key names (None for the old format without one)."""
        if wrapped[:1] == _FORMAT_KEK_ID and len(wrapped) > KEK_ID_BYTES:
            return bytes(wrapped[1 : 1 + KEK_ID_BYTES])
        return None

    def needs_rewrap(self, wrapped: bytes) -> bool:
        return self.kek_id_of(wrapped) != self.current_id

    def rewrap(self, device_id: str, wrapped: bytes) -> bytes:
        """The same device key wrapped under the current KEK (not cached)."""
        return self.wrap(device_id, self._unwrap(device_id, wrapped))

    def refresh(self) -> bool:
        """Re-read the KEK files (file-backed keyrings only); True if anything changed."""
        if self._reload is None:
            return False
        with self._reload_lock:
            before = set(self._state[1])
            kek, previous = self._reload()
            self._install(kek, previous)
            changed = set(self._state[1]) != before
        if changed:
            log.info("key-encryption keys re-read: now %d held", len(self._state[1]))
        return changed

    def _aead_for(self, device_id: str, kid: bytes) -> AESGCM:
        aead = self._state[1].get(kid)
        if aead is None and self._reload is not None:
            # A rotation may have installed a new KEK since this process started.
            if time.monotonic() - self._failed_reload_at >= _RELOAD_BACKOFF_S:
                self.refresh()
                aead = self._state[1].get(kid)
                if aead is None:
                    self._failed_reload_at = time.monotonic()
        if aead is None:
            raise ConfigError(f"device {device_id}: key is wrapped under key-encryption "
                              f"key {kid.hex()}, which is not loaded (wrong "
                              "key-encryption key?)")
        return aead

    def _unwrap(self, device_id: str, wrapped: bytes) -> bytes:
        fmt = wrapped[:1]
        if fmt == _FORMAT_KEK_ID:
            header = 1 + KEK_ID_BYTES
        elif fmt == _FORMAT_V1:
            header = 1
        else:
            raise ConfigError(f"device {device_id}: unknown wrapped-key format")
        if len(wrapped) < header + _NONCE_BYTES + _GCM_TAG_BYTES:
            raise ConfigError(f"device {device_id}: wrapped key is truncated")
        nonce = wrapped[header : header + _NONCE_BYTES]
        body = wrapped[header + _NONCE_BYTES :]
        if fmt == _FORMAT_KEK_ID:
            candidates = [self._aead_for(device_id, bytes(wrapped[1:header]))]
        else:
            candidates = list(self._state[1].values())  # old format: try each KEK
        for aead in candidates:
            try:
                return aead.decrypt(nonce, body, _aad(device_id))
            except InvalidTag:
                continue
        raise ConfigError(
            f"device {device_id}: key does not unwrap (wrong key-encryption key?)")

    def __repr__(self) -> str:
        return "Keyring(<secret>)"


def _write_owner_only(path: Path, text: str, exclusive: bool = True) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def create_kek_file(path: Path) -> None:
    """Write a fresh random KEK readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_owner_only(path, secrets.token_hex(KEK_BYTES) + "\n")
    log.warning("created a new key-encryption key at %s: back it up, device keys "
                "cannot be recovered without it", path)


def previous_kek_path(path: Path) -> Path:
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def read_kek_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} must be readable by its owner only (chmod 600)")
    return _parse_hex(path.read_text().strip(), str(path))


def read_kek_files(path: Path) -> KekPair:
    """(current, previous or None) from the KEK file and <file>.previous."""
    previous_path = previous_kek_path(path)
    previous = read_kek_file(previous_path) if previous_path.exists() else None
    return read_kek_file(path), previous


def load_keyring(settings: Settings, create: bool = False) -> Keyring:
    """The keyring from REPLENISH_KEK (+ REPLENISH_KEK_PREVIOUS) or the KEK files."""
    if settings.kek_hex:
        previous_hex = settings.kek_previous_hex
        previous = _parse_hex(previous_hex, "REPLENISH_KEK_PREVIOUS") if previous_hex else None
        return Keyring(_parse_hex(settings.kek_hex, "REPLENISH_KEK"), previous)
    path = settings.kek_path
    if not path.exists():
        if not create:
            raise ConfigError(f"no key-encryption key: set REPLENISH_KEK or create {path}")
        create_kek_file(path)
    kek, previous = read_kek_files(path)
    return Keyring(kek, previous, reload=lambda: read_kek_files(path))


def _parse_hex(text: str, where: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError as err:
        raise ConfigError(f"{where} must hold 64 hex digits") from err
    if len(value) != KEK_BYTES:
        raise ConfigError(f"{where} must hold 64 hex digits (32 bytes)")
    return value
