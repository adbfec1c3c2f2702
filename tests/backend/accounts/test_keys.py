"""Envelope encryption of device keys: AES-GCM under the KEK, bound to the device id."""

from __future__ import annotations

import json
import os
import secrets
import stat

import pytest
from sqlalchemy import select

from backend.accounts.keys import Keyring, create_kek_file, load_keyring
from backend.config import Settings
from backend.errors import ConfigError
from backend.storage import db
from backend.storage.models import Device
from provisioning.batch import provision_batch

DEVICE = "0123456789abcdef"
OTHER_DEVICE = "fedcba9876543210"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(secrets.token_bytes(32))


def test_wrap_unwrap_round_trip(keyring):
    key = secrets.token_bytes(32)
    wrapped = keyring.wrap(DEVICE, key)
    assert key not in wrapped
    assert keyring.unwrap(DEVICE, wrapped) == key
    assert keyring.wrap(DEVICE, key) != wrapped, "every wrap uses a fresh nonce"


def test_wrapped_key_does_not_unwrap_for_another_device(keyring):
    wrapped = keyring.wrap(DEVICE, secrets.token_bytes(32))
    with pytest.raises(ConfigError, match=f"device {OTHER_DEVICE}: key does not unwrap"):
        keyring.unwrap(OTHER_DEVICE, wrapped)


def test_wrapped_key_does_not_unwrap_under_another_kek(keyring):
    wrapped = keyring.wrap(DEVICE, secrets.token_bytes(32))
    other = Keyring(secrets.token_bytes(32))
    with pytest.raises(ConfigError, match="wrong key-encryption key"):
        other.unwrap(DEVICE, wrapped)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "format"])
def test_damaged_wrapped_key_is_a_config_error(keyring, damage):
    wrapped = bytearray(keyring.wrap(DEVICE, secrets.token_bytes(32)))
    if damage == "flip":
        wrapped[-1] ^= 1
    elif damage == "truncate":
        wrapped = wrapped[:8]
    elif damage == "empty":
        wrapped = bytearray()
    else:
        wrapped[0] = 2
    with pytest.raises(ConfigError, match=f"device {DEVICE}"):
        keyring.unwrap(DEVICE, bytes(wrapped))


def test_kek_must_be_32_bytes():
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring(bytes(16))


def test_load_keyring_refuses_a_kek_file_readable_by_others(tmp_path):
    path = tmp_path / "kek.key"
    path.write_text(secrets.token_hex(32) + "\n")
    for mode in (0o640, 0o604, 0o620):
        path.chmod(mode)
        with pytest.raises(ConfigError, match=r"owner only \(chmod 600\)"):
            load_keyring(Settings(data_dir=tmp_path))
    path.chmod(0o600)
    assert isinstance(load_keyring(Settings(data_dir=tmp_path)), Keyring)


def test_load_keyring_without_a_kek_says_how_to_get_one(tmp_path):
    with pytest.raises(ConfigError, match="set REPLENISH_KEK or create"):
        load_keyring(Settings(data_dir=tmp_path))
    assert not (tmp_path / "kek.key").exists()


def test_load_keyring_creates_an_owner_only_kek_file_when_asked(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = load_keyring(settings, create=True)
    path = tmp_path / "data" / "kek.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    # The file is reused, not replaced: keys wrapped before still unwrap.
    key = secrets.token_bytes(32)
    wrapped = first.wrap(DEVICE, key)
    assert load_keyring(settings, create=True).unwrap(DEVICE, wrapped) == key
    assert load_keyring(settings).unwrap(DEVICE, wrapped) == key


def test_create_kek_file_never_overwrites(tmp_path):
    path = tmp_path / "kek.key"
    create_kek_file(path)
    before = path.read_text()
    with pytest.raises(FileExistsError):
        create_kek_file(path)
    assert path.read_text() == before


def test_load_keyring_reads_replenish_kek_hex(tmp_path):
    kek = secrets.token_bytes(32)
    settings = Settings.from_env({"REPLENISH_KEK": kek.hex(),
                                  "REPLENISH_DATA_DIR": str(tmp_path)})
    keyring = load_keyring(settings, create=True)
    assert not (tmp_path / "kek.key").exists(), "REPLENISH_KEK wins over any file"
    key = secrets.token_bytes(32)
    assert Keyring(kek).unwrap(DEVICE, keyring.wrap(DEVICE, key)) == key


@pytest.mark.parametrize("bad", ["zz" * 32, "ab" * 16, "abc"])
def test_bad_replenish_kek_is_a_clear_config_error(tmp_path, bad):
    settings = Settings.from_env({"REPLENISH_KEK": bad})
    with pytest.raises(ConfigError, match="REPLENISH_KEK must hold 64 hex digits|32 bytes"):
        load_keyring(settings)


def test_repr_shows_no_secret(tmp_path):
    kek = secrets.token_bytes(32)
    keyring = Keyring(kek)
    settings = Settings(data_dir=tmp_path, kek_hex=kek.hex())
    for text in (repr(keyring), str(keyring), repr(settings)):
        assert kek.hex() not in text and kek.hex().upper() not in text
        assert repr(kek) not in text
    assert repr(keyring) == "Keyring(<secret>)"


def test_database_never_holds_a_plain_key(tmp_path):
    url = f"sqlite:///{tmp_path / 'db' / 'replenish.db'}"
    db.upgrade(url)
    keyring = Keyring(secrets.token_bytes(32))
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session, session.begin():
            made = provision_batch(session, keyring, model="button", count=5,
                                   out=tmp_path / "out", coap_host="127.0.0.1",
                                   coap_port=5683, name="scan")
        # Sanity: the scan below looks at the right thing (the rows are in the files).
        with db.make_sessionmaker(engine)() as session:
            rows = dict(session.execute(select(Device.device_id, Device.wrapped_key)).all())
    finally:
        engine.dispose()
    raw = b"".join(p.read_bytes() for p in sorted((tmp_path / "db").iterdir()))
    assert len(made) == 5
    for device in made:
        identity = json.loads((device.bundle_dir / "identity.json").read_text())
        key = bytes.fromhex(identity["key"])
        assert keyring.unwrap(device.device_id, rows[device.device_id]) == key
        assert device.device_id.encode() in raw
        for form in (key, key.hex().encode(), key.hex().upper().encode()):
            assert form not in raw, f"plain key of {device.device_id} in the database"
        code = device.claim_code.encode()
        assert code not in raw and code.replace(b"-", b"") not in raw
    assert os.path.exists(tmp_path / "db" / "replenish.db")
