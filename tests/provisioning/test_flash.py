"""Batches with labels, reproducible bundles, flashing onto the MicroPython unix port."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import segno
from sqlalchemy import select

from backend.accounts import claim_codes
from backend.storage import db
from backend.storage.models import Batch, Device
from devtools.system import program
from devtools.unix_port import UnixPortDevice
from provisioning.bundle import BundleError, build_bundle, verify_bundle
from provisioning.flash import esptool_command
from provisioning.firmware_build import firmware_version
from provisioning.labels import qr_matrix
from tests.backend.test_cli import Cli

REPLENISH = Path(sys.executable).with_name("replenish")


@pytest.fixture
def cli(tmp_path) -> Cli:
    run = Cli(tmp_path / "data")
    run("db", "upgrade")
    return run


@pytest.fixture
def batch(cli, tmp_path):
    out = tmp_path / "batch"
    cli("provision", "batch", "--model", "button", "--count", "3", "--out", str(out),
        "--name", "line-1", "--board", "esp32-devkitc-button",
        "--claim-url-base", "https://replenish.example/claim/")
    return out


def test_batch_writes_manifest_and_labels_and_refuses_a_second_run(cli, batch, tmp_path):
    rows = json.loads((batch / "manifest.json").read_text())
    assert [set(r) for r in rows] == [{"serial", "device_id", "claim_code", "model"}] * 3
    svg = "".join(p.read_text() for p in sorted(batch.glob("labels-*.svg")))
    for row in rows:
        identity = json.loads((batch / row["serial"] / "identity.json").read_text())
        secret = identity["setup_secret"]
        assert len(secret) == 8 and set(secret) <= set(claim_codes.ALPHABET)
        assert claim_codes.is_valid(row["claim_code"])
        for text in (row["serial"], row["claim_code"], secret,
                     f'data-claim-url="https://replenish.example/claim/{row["claim_code"]}"'):
            assert text in svg
        for path in (batch / "manifest.json", batch / "manifest.csv"):
            assert identity["key"] not in path.read_text()
            assert secret not in path.read_text()
    engine = db.make_engine(cli.env.get("DATABASE_URL") or
                            f"sqlite:///{(cli.data_dir / 'replenish.db').resolve()}")
    with db.make_sessionmaker(engine)() as session:
        made = session.scalars(select(Batch)).one()
        assert (made.name, made.board, made.count) == ("line-1", "esp32-devkitc-button", 3)
        assert session.query(Device).count() == 3
    again = cli("provision", "batch", "--model", "button", "--count", "3", "--out",
                str(tmp_path / "other"), "--name", "line-1", ok=False)
    assert again.returncode == 1 and "exists already" in again.stderr
    assert not (tmp_path / "other").exists()
    with db.make_sessionmaker(engine)() as session:
        assert session.query(Device).count() == 3
    engine.dispose()


def test_label_qr_code_decodes_to_the_claim_url(tmp_path):
    url = "https://replenish.example/claim/ABCD-EFGH-JKMN-P"
    png = tmp_path / "qr.png"
    segno.make_qr(url, error="m").save(png, scale=8)
    zbarimg = program("zbarimg", "zbar-tools")
    done = subprocess.run([zbarimg, "--raw", "-q", str(png)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == url
    assert qr_matrix(url) == [[bool(c) for c in row]
                              for row in segno.make_qr(url, error="m").matrix]


def test_bundles_are_reproducible_apart_from_the_identity(batch, tmp_path):
    serials = sorted(p.name for p in batch.iterdir() if p.is_dir())
    a = build_bundle(batch / serials[0] / "identity.json", "esp32-devkitc-button", tmp_path / "a")
    b = build_bundle(batch / serials[1] / "identity.json", "esp32-devkitc-button", tmp_path / "b")
    a2 = build_bundle(batch / serials[0] / "identity.json", "esp32-devkitc-button", tmp_path / "a2")
    assert set(a["files"]) == set(b["files"]) >= {"main.py", "bundle/board.json",
                                                  "bundle/identity.json",
                                                  "replenish/cose.mpy"}
    for rel in a["files"]:
        same = (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert same == (rel != "bundle/identity.json"), rel
    assert a == a2 and (tmp_path / "a" / "bundle.json").read_bytes() == \
        (tmp_path / "a2" / "bundle.json").read_bytes()
    assert a["firmware_sha256"] == b["firmware_sha256"]
    assert json.loads((tmp_path / "a" / "bundle" / "identity.json").read_text())["device_id"] \
        == a["device_id"]


def test_bundle_refuses_an_invalid_profile_and_a_model_mismatch(batch, tmp_path):
    serial = sorted(p.name for p in batch.iterdir() if p.is_dir())[0]
    bad = json.loads(Path("hardware/boards/esp32-devkitc-button.json").read_text())
    bad["button"]["pin"] = 23  # not an RTC GPIO: cannot wake the ESP32
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="GPIO23 cannot wake"):
        build_bundle(batch / serial / "identity.json", tmp_path / "bad.json", tmp_path / "x")
    with pytest.raises(BundleError, match="model 'button' but board"):
        build_bundle(batch / serial / "identity.json", "esp32-loadcell-hx711", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_flash_copies_verifies_and_records_on_the_unix_port(cli, batch, tmp_path):
    serial = sorted(p.name for p in batch.iterdir() if p.is_dir())[0]
    bundle = tmp_path / "bundle"
    cli("provision", "bundle", "--identity", str(batch / serial / "identity.json"),
        "--board", "esp32-devkitc-button", "--out", str(bundle))
    manifest = verify_bundle(bundle)
    with UnixPortDevice(tmp_path / "device") as device:
        done = cli("provision", "flash", "--port", device.url, "--bundle", str(bundle))
    assert f"{len(manifest['files'])} files copied and verified" in done.stdout
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "device" / rel).read_bytes()).hexdigest() == digest
    engine = db.make_engine(f"sqlite:///{(cli.data_dir / 'replenish.db').resolve()}")
    with db.make_sessionmaker(engine)() as session:
        row = session.scalars(select(Device).where(Device.serial == serial)).one()
        assert row.flashed_at is not None
        assert row.flashed_firmware == firmware_version(), "what the firmware reports"
        others = session.scalars(select(Device).where(Device.serial != serial)).all()
        assert all(d.flashed_at is None for d in others)
    engine.dispose()
    key = json.loads((batch / serial / "identity.json").read_text())["key"]
    assert key not in done.stdout + done.stderr


@pytest.mark.parametrize("tamper", ["change", "add", "remove"])
def test_flash_refuses_a_tampered_bundle(cli, batch, tmp_path, tamper):
    serial = sorted(p.name for p in batch.iterdir() if p.is_dir())[0]
    bundle = tmp_path / "bundle"
    build_bundle(batch / serial / "identity.json", "esp32-devkitc-button", bundle)
    if tamper == "change":
        (bundle / "main.py").write_text((bundle / "main.py").read_text() + "\nprint(1)\n")
    elif tamper == "add":
        (bundle / "boot.py").write_text("import evil\n")
    else:
        (bundle / "bundle" / "board.json").unlink()
    with UnixPortDevice(tmp_path / "device") as device:
        done = cli("provision", "flash", "--port", device.url, "--bundle", str(bundle), ok=False)
        assert device.connections == 0, "nothing may reach the device"
    assert done.returncode == 1 and "bundle refused" in done.stderr
    assert not any((tmp_path / "device").iterdir())


def test_esptool_runs_and_its_write_command_is_built_per_chip(tmp_path):
    version = subprocess.run([sys.executable, "-m", "esptool", "version"],
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "esptool" in version.stdout
    image = tmp_path / "micropython.bin"
    image.write_bytes(bytes(range(256)) * 16)
    assert esptool_command("/dev/ttyUSB0", "esp32", image)[-4:] == \
        ["write-flash", "-z", "0x1000", str(image)]
    assert esptool_command("/dev/ttyACM0", "esp32c3", image)[-2] == "0x0"
    merged = tmp_path / "merged.bin"
    done = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "merge-bin",
                           "-o", str(merged), "0x1000", str(image)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert merged.read_bytes()[0x1000:0x1000 + image.stat().st_size] == image.read_bytes()
