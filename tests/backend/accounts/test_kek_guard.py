"""The KEK is never replaced silently (issue 16, point 3): created only for a database
without stored keys; missing or wrong, it stops the start and says what to restore."""

from __future__ import annotations

import secrets
import shutil

import pytest

from backend.accounts.kek_guard import open_keyring
from backend.accounts.keys import Keyring, load_keyring
from backend.errors import ConfigError
from backend.runtime import Backend
from backend.storage import db
from provisioning.batch import provision_batch


def _sessions(settings):
    engine = db.make_engine(settings.db_url)
    return engine, db.make_sessionmaker(engine)


@pytest.fixture
def file_settings(settings, tmp_path):
    """The KEK from `<data>/kek.key` (as `make run` has it), not REPLENISH_KEK."""
    return settings.with_(kek_hex="", data_dir=tmp_path / "data")


def _provision(settings, keyring, tmp_path, count=2, name="b1"):
    with db.transaction(settings.db_url) as session:
        provision_batch(session, keyring, model="button", count=count,
                        out=tmp_path / name, coap_host="127.0.0.1", coap_port=5683,
                        name=name, labels=False)


def test_a_new_kek_only_for_a_database_without_keys(file_settings):
    engine, sessions = _sessions(file_settings)
    try:
        with pytest.raises(ConfigError, match="no key-encryption key"):
            open_keyring(file_settings, sessions)  # not asked to create: nothing written
        assert not file_settings.kek_path.exists()
        keyring = open_keyring(file_settings, sessions, create=True)
        assert file_settings.kek_path.stat().st_mode & 0o077 == 0
        assert open_keyring(file_settings, sessions, create=True).current_id == \
            keyring.current_id, "an existing KEK file is used, never replaced"
    finally:
        engine.dispose()


def test_missing_kek_file_with_stored_keys_stops_and_creates_nothing(file_settings, tmp_path):
    engine, sessions = _sessions(file_settings)
    try:
        keyring = open_keyring(file_settings, sessions, create=True)
        _provision(file_settings, keyring, tmp_path, count=3)
        backup = tmp_path / "kek.backup"
        shutil.move(file_settings.kek_path, backup)  # the file is lost

        with pytest.raises(ConfigError) as refused:
            open_keyring(file_settings, sessions, create=True)
        message = str(refused.value)
        assert f"no key-encryption key at {file_settings.kek_path}" in message
        assert "holds 3 device keys" in message and keyring.current_id.hex() in message
        assert "Restore that file from the backup" in message
        assert "docs/operations.md" in message
        assert not file_settings.kek_path.exists(), "nothing in the way of the restore"

        # The whole backend refuses the same way (replenish run: Backend(create_kek=True)).
        with pytest.raises(ConfigError, match="Restore that file"):
            Backend(file_settings, create_kek=True)
        assert not file_settings.kek_path.exists()

        shutil.move(backup, file_settings.kek_path)  # restored: it starts
        assert open_keyring(file_settings, sessions).current_id == keyring.current_id
    finally:
        engine.dispose()


def test_a_kek_that_does_not_open_the_stored_keys_stops(file_settings, tmp_path):
    engine, sessions = _sessions(file_settings)
    try:
        keyring = open_keyring(file_settings, sessions, create=True)
        _provision(file_settings, keyring, tmp_path)
        right = file_settings.kek_path.read_text()
        file_settings.kek_path.write_text(secrets.token_hex(32) + "\n")  # another key
        with pytest.raises(ConfigError) as refused:
            open_keyring(file_settings, sessions, create=True)
        message = str(refused.value)
        assert "does not open the database's device keys: 2 are wrapped under " \
               f"key-encryption key id {keyring.current_id.hex()}" in message
        assert "Restore the key-encryption key that was backed up" in message
        assert file_settings.kek_path.read_text() != right, "the file is left as found"

        # The same with REPLENISH_KEK: the message names the variable, not a file.
        with pytest.raises(ConfigError, match="key from REPLENISH_KEK .* does not open"):
            open_keyring(file_settings.with_(kek_hex=secrets.token_hex(32)), sessions)
    finally:
        engine.dispose()


def test_keys_of_an_unfinished_rotation_open_with_the_previous_kek(settings, tmp_path):
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    engine, sessions = _sessions(settings)
    try:
        _provision(settings, Keyring(old), tmp_path, name="old")
        _provision(settings, Keyring(new), tmp_path, name="new")
        rotating = settings.with_(kek_hex=new.hex(), kek_previous_hex=old.hex())
        assert open_keyring(rotating, sessions).kek_count == 2
        with pytest.raises(ConfigError, match=f"2 are wrapped under key-encryption key "
                                              f"id {load_keyring(settings.with_(kek_hex=old.hex())).current_id.hex()}"):
            open_keyring(settings.with_(kek_hex=new.hex()), sessions)
    finally:
        engine.dispose()
