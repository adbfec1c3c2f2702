"""The key-encryption key checked against the database before anything runs.

A new KEK is created only when the database holds no wrapped device key. Once keys are
stored, the KEK they were wrapped under is the only one that opens them: a missing KEK
file, or a KEK that does not unwrap the stored keys, stops the start with a message
that says what to restore. Writing a fresh KEK there instead (what `replenish run` did
before issue 16) took the whole fleet offline and put a file in the way of the restore.

The check reads one stored key per KEK id in use (a `GROUP BY` on the wrapped keys'
first bytes: format and KEK id) and unwraps it, so it costs a few AES-GCM calls however
large the fleet is. docs/operations.md says how to back the KEK up with the database.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.accounts.keys import (
    KEK_ID_BYTES,
    Keyring,
    create_kek_file,
    load_keyring,
    previous_kek_path,
)
from backend.config import Settings
from backend.errors import ConfigError
from backend.storage.models import Device

log = logging.getLogger(__name__)

RESTORE_HINT = "docs/operations.md, \"Keys: backup and restore\""


def open_keyring(settings: Settings, sessions: sessionmaker, create: bool = False) -> Keyring:
    """The keyring for this database: loaded, checked against one stored key per KEK
    id, or (`create`, and only while no key is stored) a new KEK file."""
    with sessions() as session:
        stored = _stored_keys(session)
    if not settings.kek_hex and not settings.kek_path.exists():
        if stored:
            raise ConfigError(_missing_message(settings, stored))
        if create:
            try:
                create_kek_file(settings.kek_path)
            except FileExistsError:
                pass  # another process of this deployment made it a moment ago
    keyring = load_keyring(settings)
    _check(keyring, settings, stored)
    return keyring


def _stored_keys(session: Session) -> dict[bytes, tuple[int, str, bytes]]:
    """{format byte + kek id: (devices wrapped that way, one device id, its wrapped key)}."""
    head = func.substr(Device.wrapped_key, 1, 1 + KEK_ID_BYTES)
    groups = session.execute(
        select(head, func.count(), func.min(Device.id)).group_by(head)).all()
    out = {}
    for prefix, count, device_pk in groups:
        device_id, wrapped = session.execute(
            select(Device.device_id, Device.wrapped_key).where(Device.id == device_pk)).one()
        out[bytes(prefix)] = (count, device_id, bytes(wrapped))
    return out


def _source(settings: Settings) -> str:
    return "REPLENISH_KEK" if settings.kek_hex else str(settings.kek_path)


def _missing_message(settings: Settings, stored: dict) -> str:
    count = sum(n for n, _d, _w in stored.values())
    ids = sorted({kid.hex() for _n, _d, w in stored.values()
                  if (kid := Keyring.kek_id_of(w)) is not None})
    named = f" (key-encryption key id {', '.join(ids)})" if ids else ""
    return (f"no key-encryption key at {settings.kek_path}, but the database holds {count} "
            f"device key{'s' if count != 1 else ''} wrapped under one{named}. Restore that "
            f"file from the backup taken with this database (owner-only, chmod 600), or "
            f"set REPLENISH_KEK to it; a new key would not open the stored ones and every "
            f"device would be refused. Nothing was created. See {RESTORE_HINT}")


def _check(keyring: Keyring, settings: Settings, stored: dict) -> None:
    for count, device_id, wrapped in stored.values():
        try:
            keyring.unwrap(device_id, wrapped)
        except ConfigError as err:
            kid = Keyring.kek_id_of(wrapped)
            under = f"key-encryption key id {kid.hex()}" if kid else "an older key format"
            loaded = keyring.current_id.hex()
            rotation = ("" if settings.kek_hex else
                        f" (during a rotation, the old key belongs in "
                        f"{previous_kek_path(settings.kek_path)})")
            raise ConfigError(
                f"the key-encryption key from {_source(settings)} (id {loaded}) does not "
                f"open the database's device keys: {count} are wrapped under {under} "
                f"(device {device_id}: {err}). Restore the key-encryption key that was "
                f"backed up with this database{rotation}; see {RESTORE_HINT}") from err
    if stored:
        log.info("key-encryption key %s opens the stored device keys (%d key id%s checked)",
                 keyring.current_id.hex(), len(stored), "s" if len(stored) != 1 else "")
