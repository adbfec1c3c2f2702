"""Envelope encryption of device keys: AES-GCM under the KEK, bound to the device id."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import stat

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.accounts.keys import Keyring, create_kek_file, kek_id, load_keyring
from backend.config import Settings
from backend.errors import ConfigError

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
    for size in (16, 33):  # 16 would be a valid AES key, 33 too long
        with pytest.raises(ConfigError, match="32 bytes"):
            Keyring(bytes(size))
        with pytest.raises(ConfigError, match="32 bytes"):
            Keyring(bytes(32), previous=bytes(size))


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
    # Imported here: the other tests (make mutate's selection) start in a fifth of the time.
    from sqlalchemy import select

    from backend.storage import db
    from backend.storage.models import Device
    from provisioning.batch import provision_batch

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


# --- the wrapped-key formats, the keyring's two KEKs and its re-read of the files ------

def _aad(device_id: str) -> bytes:
    return b"replenish/device-key/v1/" + device_id.encode()  # the module docstring


def _documented_kek_id(kek: bytes) -> bytes:
    return hashlib.sha256(b"replenish/kek-id/v1" + kek).digest()[:4]


def test_a_wrapped_key_is_the_documented_format():
    kek, key = secrets.token_bytes(32), secrets.token_bytes(32)
    keyring = Keyring(kek)
    wrapped = keyring.wrap(DEVICE, key)
    assert len(wrapped) == 1 + 4 + 12 + 32 + 16
    assert wrapped[:1] == b"\x10" and wrapped[1:5] == _documented_kek_id(kek) == kek_id(kek)
    assert AESGCM(kek).decrypt(wrapped[5:17], wrapped[17:], _aad(DEVICE)) == key
    assert keyring.current_id == _documented_kek_id(kek)
    assert Keyring.kek_id_of(wrapped) == _documented_kek_id(kek)
    assert not keyring.needs_rewrap(wrapped)


def test_the_old_format_without_a_kek_id_still_unwraps_under_either_kek():
    old, new, key = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32)
    nonce = secrets.token_bytes(12)
    v1 = b"\x01" + nonce + AESGCM(old).encrypt(nonce, key, _aad(DEVICE))
    assert Keyring(old).unwrap(DEVICE, v1) == key
    both = Keyring(new, previous=old)
    assert both.unwrap(DEVICE, v1) == key
    assert Keyring.kek_id_of(v1) is None and both.needs_rewrap(v1)
    rewrapped = both.rewrap(DEVICE, v1)
    assert rewrapped[:5] == b"\x10" + kek_id(new)
    assert Keyring(new).unwrap(DEVICE, rewrapped) == key
    with pytest.raises(ConfigError, match=f"device {DEVICE}: key does not unwrap"):
        Keyring(new).unwrap(DEVICE, v1)


@pytest.mark.parametrize("fmt, shortest", [(b"\x10", 1 + 4 + 12 + 16), (b"\x01", 1 + 12 + 16)])
def test_a_wrapped_key_shorter_than_its_header_nonce_and_tag_is_truncated(fmt, shortest):
    kek = secrets.token_bytes(32)
    keyring = Keyring(kek)
    head = fmt + (kek_id(kek) if fmt == b"\x10" else b"")
    with pytest.raises(ConfigError, match=f"device {DEVICE}: wrapped key is truncated"):
        keyring.unwrap(DEVICE, head + bytes(shortest - 1 - len(head)))
    with pytest.raises(ConfigError, match=f"device {DEVICE}: key does not unwrap"):
        keyring.unwrap(DEVICE, head + bytes(shortest - len(head)))


@pytest.mark.parametrize("fmt", [b"\x00", b"\x02", b"\x11", b"\xff"])
def test_an_unknown_format_byte_is_named(fmt):
    keyring = Keyring(secrets.token_bytes(32))
    wrapped = keyring.wrap(DEVICE, secrets.token_bytes(32))
    with pytest.raises(ConfigError, match=f"device {DEVICE}: unknown wrapped-key format"):
        keyring.unwrap(DEVICE, fmt + wrapped[1:])


def test_kek_id_of_needs_the_format_byte_and_four_id_bytes():
    assert Keyring.kek_id_of(b"\x10abcd") == b"abcd"
    assert Keyring.kek_id_of(b"\x10abcdef") == b"abcd"
    assert Keyring.kek_id_of(b"\x10abc") is None
    assert Keyring.kek_id_of(b"\x10a") is None
    assert Keyring.kek_id_of(b"\x11abcd") is None
    assert Keyring.kek_id_of(b"") is None


def test_a_keyring_with_the_previous_kek_unwraps_both_and_wraps_under_the_current():
    old, new, key = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32)
    under_old = Keyring(old).wrap(DEVICE, key)
    both = Keyring(new, previous=old)
    assert both.kek_count == 2 and both.holds(kek_id(old)) and both.holds(kek_id(new))
    assert not both.holds(kek_id(secrets.token_bytes(32)))
    assert both.current_id == kek_id(new)
    assert both.unwrap(DEVICE, under_old) == key and both.needs_rewrap(under_old)
    fresh = both.rewrap(DEVICE, under_old)
    assert fresh[1:5] == kek_id(new) and not both.needs_rewrap(fresh)
    assert Keyring(new).unwrap(DEVICE, fresh) == key
    assert both.wrap(DEVICE, key)[1:5] == kek_id(new)
    assert Keyring(new, previous=new).kek_count == 1
    assert Keyring(new).kek_count == 1
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring(new, previous=bytes(31))


class Clock:
    def __init__(self, now: float):
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_an_unknown_kek_id_rereads_the_files_at_most_once_a_second(monkeypatch):
    from backend.accounts import keys

    old, new, key = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32)
    files = {"pair": (old, None)}
    reads = []

    def reload():
        reads.append(files["pair"])
        return files["pair"]

    clock = Clock(1000.0)
    monkeypatch.setattr(keys, "time", clock)
    keyring = Keyring(old, reload=reload)
    under_new = Keyring(new).wrap(DEVICE, key)
    with pytest.raises(ConfigError, match=f"{kek_id(new).hex()}, which is not loaded"):
        keyring.unwrap(DEVICE, under_new)
    assert len(reads) == 1
    files["pair"] = (new, old)                       # the rotation lands meanwhile
    clock.now = 1000.9                               # within the back-off: no re-read
    with pytest.raises(ConfigError, match="which is not loaded"):
        keyring.unwrap(DEVICE, under_new)
    assert len(reads) == 1
    clock.now = 1001.0                               # one second later: re-read, found
    assert keyring.unwrap(DEVICE, under_new) == key
    assert len(reads) == 2 and keyring.kek_count == 2 and keyring.current_id == kek_id(new)
    assert keyring.unwrap(DEVICE, keyring.wrap(DEVICE, key)) == key
    assert len(reads) == 2, "a known kek id needs no re-read"


def test_a_keyring_without_files_never_rereads():
    keyring = Keyring(secrets.token_bytes(32))
    assert keyring.refresh() is False
    with pytest.raises(ConfigError, match="which is not loaded"):
        keyring.unwrap(DEVICE, Keyring(secrets.token_bytes(32)).wrap(DEVICE, bytes(32)))


def test_refresh_reports_whether_the_files_changed(tmp_path, caplog):
    old = secrets.token_bytes(32)
    path = tmp_path / "kek.key"
    path.write_text(old.hex() + "\n")
    path.chmod(0o600)
    keyring = load_keyring(Settings(data_dir=tmp_path))
    assert keyring.refresh() is False and keyring.kek_count == 1
    new = secrets.token_bytes(32)
    previous = tmp_path / "kek.key.previous"
    previous.write_text(old.hex() + "\n")
    previous.chmod(0o600)
    path.write_text(new.hex() + "\n")
    with caplog.at_level(logging.INFO, logger="backend.accounts.keys"):
        assert keyring.refresh() is True
    assert "now 2 held" in caplog.text
    assert keyring.kek_count == 2 and keyring.current_id == kek_id(new)
    assert keyring.refresh() is False
    assert load_keyring(Settings(data_dir=tmp_path)).kek_count == 2  # .previous read too
    previous.unlink()                                # the rotation finished
    assert keyring.refresh() is True and keyring.kek_count == 1


def test_replenish_kek_previous_is_the_keyrings_second_kek(tmp_path):
    old, new, key = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32)
    keyring = load_keyring(Settings.from_env({
        "REPLENISH_KEK": new.hex(), "REPLENISH_KEK_PREVIOUS": old.hex(),
        "REPLENISH_DATA_DIR": str(tmp_path)}))
    assert keyring.kek_count == 2 and keyring.current_id == kek_id(new)
    assert keyring.unwrap(DEVICE, Keyring(old).wrap(DEVICE, key)) == key
    assert load_keyring(Settings.from_env({"REPLENISH_KEK": new.hex()})).kek_count == 1
    with pytest.raises(ConfigError, match="^REPLENISH_KEK_PREVIOUS must hold 64 hex digits$"):
        load_keyring(Settings.from_env({"REPLENISH_KEK": new.hex(),
                                        "REPLENISH_KEK_PREVIOUS": "zz" * 32}))


@pytest.mark.parametrize("bad, reason", [
    ("zz" * 32, "^REPLENISH_KEK must hold 64 hex digits$"),
    ("ab" * 31, r"^REPLENISH_KEK must hold 64 hex digits \(32 bytes\)$"),
    ("ab" * 33, r"\(32 bytes\)$"),
])
def test_each_bad_kek_says_which_way_it_is_bad(bad, reason):
    with pytest.raises(ConfigError, match=reason):
        load_keyring(Settings.from_env({"REPLENISH_KEK": bad}))


def test_a_created_kek_file_sits_in_an_owner_only_directory_and_is_announced(tmp_path, caplog):
    path = tmp_path / "new" / "keys" / "kek.key"      # two folders to make
    with caplog.at_level(logging.WARNING, logger="backend.accounts.keys"):
        create_kek_file(path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())
    assert f"created a new key-encryption key at {path}" in caplog.text
    assert path.read_text().strip() not in caplog.text
