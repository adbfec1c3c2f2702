"""Rotate the key-encryption key: every device key re-wrapped, ingest keeps running.

Files (the default, `REPLENISH_KEK_FILE` / data/kek.key):

1. `begin_file_rotation` writes a fresh KEK to kek.key.next, copies the current one to
   kek.key.previous and renames kek.key.next over kek.key. At every instant the two
   files hold every KEK a stored key may be wrapped under.
2. `rewrap_all` walks the devices in small transactions (100 rows), re-wrapping each
   key still under an older KEK. Ingest processes holding the old keyring meet the new
   kek id and re-read the files (backend/accounts/keys.py), so no event is refused meanwhile.
3. `finish_file_rotation` deletes kek.key.previous once no stored key needs it.

An interrupted rotation is resumed by running it again (a present kek.key.previous
means "rotation under way": no new KEK is made, the re-wrap continues).

Environment (`REPLENISH_KEK`): the operator sets REPLENISH_KEK to the new KEK and
REPLENISH_KEK_PREVIOUS to the old one, restarts ingest processes one at a time, runs
the rotation (re-wrap only), then drops REPLENISH_KEK_PREVIOUS.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select, update

from backend.accounts.keys import (
    KEK_BYTES,
    Keyring,
    _write_owner_only,
    previous_kek_path,
    read_kek_file,
)
from backend.errors import ConfigError
from backend.storage import db
from backend.storage.models import Device

log = logging.getLogger(__name__)

REWRAP_ROWS_PER_TRANSACTION = 100
_MAX_PASSES = 5


def begin_file_rotation(path: Path) -> bool:
    """Install a new KEK in `path`, keeping the old one as <path>.previous.

    Returns False (and changes nothing) when a rotation is already under way.
    """
    previous = previous_kek_path(path)
    if previous.exists():
        log.warning("%s exists: resuming the rotation already under way", previous)
        return False
    if not path.exists():
        raise ConfigError(f"no key-encryption key at {path}: nothing to rotate")
    old_text = read_kek_file(path).hex() + "\n"  # also checks owner-only permissions
    staged = path.with_name(path.name + ".next")
    staged.unlink(missing_ok=True)  # left over from a crash before the rename below
    _write_owner_only(staged, secrets.token_hex(KEK_BYTES) + "\n")
    _write_owner_only(previous, old_text)
    os.replace(staged, path)
    log.info("new key-encryption key in %s; the old one is in %s until the re-wrap "
             "finishes", path, previous)
    return True


def count_needing_rewrap(url: str, keyring: Keyring) -> int:
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session:
            return sum(1 for wrapped in session.scalars(select(Device.wrapped_key))
                       if keyring.needs_rewrap(wrapped))
    finally:
        engine.dispose()


def device_count(url: str) -> int:
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session:
            return session.scalar(select(func.count(Device.id))) or 0
    finally:
        engine.dispose()


def rewrap_all(url: str, keyring: Keyring, progress: Callable[[int], None] | None = None,
               rows_per_transaction: int = REWRAP_ROWS_PER_TRANSACTION) -> int:
    """Re-wrap every device key not under the keyring's current KEK; the count done.

    Small transactions keep each write lock short (SQLite has one writer: ingest's
    group commit waits at most one of them). Each row is updated only if its wrapped
    key is still the one read, so a key rotated meanwhile is never overwritten; such a
    row is picked up by the next pass.
    """
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine, writer=True)
    done = 0
    try:
        for _ in range(_MAX_PASSES):
            skipped = 0
            last_pk = 0
            while True:
                with sessions() as session, session.begin():
                    rows = session.execute(
                        select(Device.id, Device.device_id, Device.wrapped_key)
                        .where(Device.id > last_pk).order_by(Device.id)
                        .limit(rows_per_transaction)).all()
                    for pk, device_id, wrapped in rows:
                        if not keyring.needs_rewrap(wrapped):
                            continue
                        fresh = keyring.rewrap(device_id, wrapped)
                        changed = session.execute(
                            update(Device).where(Device.id == pk,
                                                 Device.wrapped_key == wrapped)
                            .values(wrapped_key=fresh)).rowcount
                        done += changed
                        skipped += 1 - changed
                if not rows:
                    break
                last_pk = rows[-1][0]
                if progress:
                    progress(len(rows))
            if not skipped:
                return done
        raise ConfigError("device keys kept changing during the re-wrap; run it again")
    finally:
        engine.dispose()


def finish_file_rotation(url: str, keyring: Keyring, path: Path) -> bool:
    """Delete <path>.previous if no stored key is wrapped under it any more."""
    previous = previous_kek_path(path)
    if not previous.exists():
        return False
    left = count_needing_rewrap(url, keyring)
    if left:
        raise ConfigError(f"{left} device keys still need the previous KEK; "
                          "run the rotation again")
    previous.unlink()
    return True
