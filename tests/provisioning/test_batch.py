"""Provisioning never destroys and never guesses (issue 16, point 4)."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from sqlalchemy import func, select

from backend.accounts.keys import Keyring
from backend.config import Settings
from backend.errors import Conflict
from backend.storage import db
from backend.storage.models import Batch, Device
from provisioning import addresses, batch as batch_module
from provisioning.addresses import AddressError
from provisioning.batch import provision_batch
from provisioning.bundle import build_bundle
from provisioning.firmware_build import firmware_version
from provisioning.labels import PER_SHEET, write_label_sheets
from tests.backend.test_cli import Cli


@pytest.fixture
def cli(tmp_path) -> Cli:
    run = Cli(tmp_path / "data")
    run("db", "upgrade")
    return run


def _batch(cli: Cli, out, *args: str, ok: bool = True, count: int = 3):
    return cli("provision", "batch", "--model", "button", "--count", str(count),
               "--out", str(out), *args, ok=ok)


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- never destroys ------------------------------------------------------------------------

def test_an_existing_batch_folder_is_refused_and_left_as_it_was(cli, tmp_path):
    out = tmp_path / "line1"
    _batch(cli, out, "--name", "first", "--claim-url-base", "https://r.example/claim/")
    before = _tree(out)
    again = _batch(cli, out, "--name", "second", ok=False)  # another name: still refused
    assert again.returncode == 1
    assert f"error: {out} exists and is not empty: a batch never writes over files" \
        in again.stderr
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # An empty folder (made ready by hand) is fine.
    (tmp_path / "empty").mkdir()
    _batch(cli, tmp_path / "empty", "--name", "third")
    assert (tmp_path / "empty" / "manifest.json").exists()


def test_a_batch_that_fails_half_way_leaves_no_folder_and_no_rows(settings, tmp_path,
                                                                  monkeypatch):
    keyring = Keyring(secrets.token_bytes(32))
    out = tmp_path / "line1"
    written = []
    real = batch_module.write_bundle

    def disk_full_at_the_third(*args, **kwargs):
        written.append(args[0])
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_module, "write_bundle", disk_full_at_the_third)
    with pytest.raises(OSError, match="No space left"):
        with db.transaction(settings.db_url) as session:
            provision_batch(session, keyring, model="button", count=5, out=out,
                            coap_host="192.0.2.1", coap_port=5683, name="half")
    assert written and all(str(path).startswith(str(tmp_path / ".line1.partial-"))
                           for path in written), "written beside, not into, the target"
    assert not out.exists()
    assert list(tmp_path.glob(".line1.partial-*")) == []
    engine = db.make_engine(settings.db_url)
    with db.make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Device)) == 0
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    engine.dispose()

    monkeypatch.setattr(batch_module, "write_bundle", real)
    with db.transaction(settings.db_url) as session:  # the same name again: it works now
        made = provision_batch(session, keyring, model="button", count=5, out=out,
                               coap_host="192.0.2.1", coap_port=5683, name="half")
    assert made[0].bundle_dir == out / "half-00001"
    assert (made[0].bundle_dir / "identity.json").exists()
    with pytest.raises(Conflict, match="exists and is not empty"):
        with db.transaction(settings.db_url) as session:
            provision_batch(session, keyring, model="button", count=1, out=out,
                            coap_host="192.0.2.1", coap_port=5683, name="other")


# -- never guesses -------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--model", "toaster"], "unknown model 'toaster': the board profiles in hardware/boards "
                             "define button, scale"),
    (["--coap-port", "99999"], "99999 is not in the range 1<=x<=65535"),
    (["--coap-port", "0"], "0 is not in the range 1<=x<=65535"),
    (["--coap-host", "0.0.0.0"], "is the 'any address' of a listener"),
    (["--coap-host", "not a host"], "is neither an IP address nor a host name"),
    (["--claim-url-base", "ftp://r.example/claim/"], "must be an http:// or https:// URL"),
    (["--claim-url-base", "https:///claim/"], "must be an http:// or https:// URL"),
])
def test_models_ports_and_addresses_are_checked_before_anything_is_written(
        cli, tmp_path, args, message):
    out = tmp_path / "b"
    base = ["provision", "batch", "--count", "2", "--out", str(out)]
    if "--model" not in args:
        base += ["--model", "button"]
    done = cli(*base, *args, ok=False)
    assert done.returncode in (1, 2) and message in done.stderr, done.stderr
    assert not out.exists()
    assert not (cli.data_dir / "kek.key").exists()


def test_addresses_default_to_the_public_settings(cli, tmp_path):
    cli.env.update(REPLENISH_PUBLIC_COAP="ingest.replenish.example:5999",
                   REPLENISH_PUBLIC_URL="https://replenish.example/")
    done = _batch(cli, tmp_path / "b", "--name", "pub")
    assert "warning" not in done.stderr
    identity = json.loads(next((tmp_path / "b").glob("pub-*/identity.json")).read_text())
    assert (identity["coap_host"], identity["coap_port"]) == ("ingest.replenish.example", 5999)
    sheet = (tmp_path / "b" / "labels-0001.svg").read_text()
    assert 'data-claim-url="https://replenish.example/claim/' in sheet
    # Flags still win over the settings.
    _batch(cli, tmp_path / "c", "--name", "flag", "--coap-host", "2001:db8::5",
           "--coap-port", "6000")
    identity = json.loads(next((tmp_path / "c").glob("flag-*/identity.json")).read_text())
    assert (identity["coap_host"], identity["coap_port"]) == ("2001:db8::5", 6000)


def test_without_public_settings_the_bundle_says_it_points_at_loopback(cli, tmp_path):
    cli.env.update(REPLENISH_COAP_PORT="5700", REPLENISH_HTTP_PORT="8100")
    done = _batch(cli, tmp_path / "b", "--name", "bench")
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, done.stderr
    assert "devices will send their events to 127.0.0.1:5700, a loopback address" \
        in warnings[0] and "REPLENISH_PUBLIC_COAP" in warnings[0]
    assert "label QR codes will open http://127.0.0.1:8100/claim/" in warnings[1]
    identity = json.loads(next((tmp_path / "b").glob("bench-*/identity.json")).read_text())
    assert identity["coap_port"] == 5700, "REPLENISH_COAP_PORT, not a fixed 5683"


@pytest.mark.parametrize("text, expected", [
    ("ingest.example", ("ingest.example", 5683)), ("192.0.2.7:6001", ("192.0.2.7", 6001)),
    ("[2001:db8::1]:6002", ("2001:db8::1", 6002)), ("2001:db8::1", ("2001:db8::1", 5683)),
])
def test_public_coap_forms(text, expected):
    assert addresses.parse_host_port(text, 5683, "REPLENISH_PUBLIC_COAP") == expected


@pytest.mark.parametrize("text", ["host:port", "[::1]:70000", "0.0.0.0:5683", "a..b"])
def test_bad_public_coap_is_refused(text):
    with pytest.raises(AddressError):
        addresses.targets(Settings(public_coap=text))


# -- what the batch records -----------------------------------------------------------------

def test_the_batch_records_the_firmware_it_bundles(cli, tmp_path):
    out = tmp_path / "b"
    done = _batch(cli, out, "--name", "fw", "--board", "esp32-devkitc-button")
    version = firmware_version()
    assert version != "0.1.0"
    identity = json.loads((out / "fw-00001" / "identity.json").read_text())
    assert identity["fw"] == version
    bundle = build_bundle(out / "fw-00001" / "identity.json", "esp32-devkitc-button",
                          tmp_path / "bundle")
    assert bundle["firmware_version"] == version
    engine = db.make_engine(f"sqlite:///{(cli.data_dir / 'replenish.db').resolve()}")
    with db.make_sessionmaker(engine)() as session:
        row = session.scalars(select(Batch)).one()
        assert (row.firmware_version, row.firmware_sha256) == (
            version, bundle["firmware_sha256"])
    engine.dispose()
    assert f"(firmware {version}, {bundle['firmware_sha256'][:16]})" in done.stdout


# -- labels ----------------------------------------------------------------------------------

def test_label_sheets_are_a4_pages_that_scale_to_thousands(tmp_path):
    from backend.accounts import claim_codes
    from provisioning.batch import ProvisionedDevice

    count = 2 * PER_SHEET * 21 + 5  # 1,013 devices: 43 sheets, the last one 5 labels
    devices = [ProvisionedDevice(f"big-{n:05d}", f"{n:016x}", claim_codes.generate(),
                                 "button", tmp_path, claim_codes.setup_secret())
               for n in range(count)]
    paths = write_label_sheets(tmp_path, devices, "https://r.example/claim/")
    assert [p.name for p in paths] == [f"labels-{n:04d}.svg" for n in range(1, 44)]
    seen = []
    for path in paths:
        svg = path.read_text()
        assert re.match(r'<svg [^>]*width="210mm" height="297mm" viewBox="0 0 210 297"', svg)
        assert path.stat().st_mode & 0o077 == 0
        assert len(svg) < 400_000, "one sheet stays a small file"
        seen += re.findall(r'data-claim-url="https://r.example/claim/([^"]+)"', svg)
    assert seen == [d.claim_code for d in devices], "each label once, in order"
    assert paths[-1].read_text().count("<g id=") == 5
