"""Envelope encryption of device keys under a key-encryption key (KEK).

Device keys live in the database only wrapped with AES-256-GCM under the KEK; the
KEK comes from REPLENISH_KEK (hex) or a file readable by its owner only, never from
the database. The device id is bound in as associated data, so a wrapped key copied
onto another device row does not unwrap.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.config import Settings
from backend.errors import ConfigError

log = logging.getLogger(__name__)

_FORMAT_V1 = b"\x01"
_NONCE_BYTES = 12
_GCM_TAG_BYTES = 16
KEK_BYTES = 32


def _aad(device_id: str) -> bytes:
    return b"replenish/device-key/v1/" + device_id.encode()


class Keyring:
    def __init__(self, kek: bytes):
        if len(kek) != KEK_BYTES:
            raise ConfigError("the key-encryption key must be 32 bytes")
        self._aead = AESGCM(kek)
        # Unwrapping costs an AES-GCM call; ingest asks for the same keys over and over.
        self.unwrap = lru_cache(maxsize=65536)(self._unwrap)

    def wrap(self, device_id: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, key, _aad(device_id))

    def _unwrap(self, device_id: str, wrapped: bytes) -> bytes:
        if wrapped[:1] != _FORMAT_V1:
            raise ConfigError(f"device {device_id}: unknown wrapped-key format")
        if len(wrapped) < 1 + _NONCE_BYTES + _GCM_TAG_BYTES:
            raise ConfigError(f"device {device_id}: wrapped key is truncated")
        nonce = wrapped[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, wrapped[1 + _NONCE_BYTES :], _aad(device_id))
        except InvalidTag as err:
            raise ConfigError(
                f"device {device_id}: key does not unwrap (wrong key-encryption key?)"
            ) from err

    def __repr__(self) -> str:
        return "Keyring(<secret>)"


def create_kek_file(path: Path) -> None:
    """Write a fresh random KEK readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(KEK_BYTES) + "\n")
    log.warning("created a new key-encryption key at %s: back it up, device keys "
                "cannot be recovered without it", path)


def load_keyring(settings: Settings, create: bool = False) -> Keyring:
    if settings.kek_hex:
        return Keyring(_parse_hex(settings.kek_hex, "REPLENISH_KEK"))
    path = settings.kek_path
    if not path.exists():
        if not create:
            raise ConfigError(f"no key-encryption key: set REPLENISH_KEK or create {path}")
        create_kek_file(path)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} must be readable by its owner only (chmod 600)")
    return Keyring(_parse_hex(path.read_text().strip(), str(path)))


def _parse_hex(text: str, where: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError as err:
        raise ConfigError(f"{where} must hold 64 hex digits") from err
