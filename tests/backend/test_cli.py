"""The real `replenish` console command, run as a subprocess on a fresh data folder."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backend.accounts import claim_codes

ROOT = Path(__file__).resolve().parents[2]
REPLENISH = Path(sys.executable).with_name("replenish")
HEX_KEY = re.compile(r"\b[0-9a-fA-F]{64}\b")


class Cli:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("REPLENISH_") and k != "DATABASE_URL"}
        self.env["REPLENISH_DATA_DIR"] = str(data_dir)
        # Run this checkout's code whichever tree the venv's editable install points at.
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(REPLENISH), *args], env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        if ok:
            assert done.returncode == 0, done
        return done


@pytest.fixture
def cli(tmp_path) -> Cli:
    assert REPLENISH.exists(), f"{REPLENISH}: is the project installed in the venv?"
    run = Cli(tmp_path / "data")
    run("db", "upgrade")
    return run


def provision(cli: Cli, out: Path, name: str, count: int = 5) -> subprocess.CompletedProcess:
    return cli("provision", "batch", "--model", "button", "--count", str(count),
               "--out", str(out), "--name", name)


def manifest(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())


def new_household(cli: Cli, name: str) -> int:
    done = cli("household", "create", name)
    household = re.search(r"^household (\d+)$", done.stdout, re.M)
    token = re.search(r"^api token (rp_\S+)$", done.stdout, re.M)
    assert household and token, done.stdout
    return int(household.group(1))


def test_db_upgrade_creates_the_database(tmp_path):
    cli = Cli(tmp_path / "fresh")
    done = cli("db", "upgrade")
    assert "newest schema" in done.stdout
    assert (tmp_path / "fresh" / "replenish.db").exists()
    assert cli("db", "upgrade").returncode == 0, "upgrading twice is harmless"


def test_provision_batch_writes_manifest_and_bundles(cli, tmp_path):
    out = tmp_path / "batch1"
    done = provision(cli, out, "b1")
    kek = cli.data_dir / "kek.key"
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600, "a new KEK is owner-only"

    rows = manifest(out)
    with open(out / "manifest.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert csv_rows == rows and len(rows) == 5
    assert all(list(row) == ["serial", "device_id", "claim_code", "model"] for row in rows)
    assert all(row["model"] == "button" and claim_codes.is_valid(row["claim_code"])
               for row in rows)
    for name in ("manifest.csv", "manifest.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600

    keys = []
    for row in rows:
        path = out / row["serial"] / "identity.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        identity = json.loads(path.read_text())
        assert identity["device_id"] == row["device_id"]
        assert re.fullmatch(r"[0-9a-f]{64}", identity["key"])
        assert re.fullmatch(r"[0-9a-f]{16}", identity["device_id"])
        keys.append(identity["key"])
    assert len(set(keys)) == 5
    assert len({r["device_id"] for r in rows}) == 5
    assert len({r["serial"] for r in rows}) == 5
    assert len({r["claim_code"] for r in rows}) == 5

    public = [(out / "manifest.csv").read_text(), (out / "manifest.json").read_text(),
              done.stdout, done.stderr]
    for text in public:
        assert not HEX_KEY.search(text), "no key may leave the bundles"
        assert all(key not in text.lower() for key in keys)
    assert all(row["claim_code"] in done.stdout for row in rows)


def test_provision_batch_with_a_used_name_fails_and_creates_nothing(cli, tmp_path):
    provision(cli, tmp_path / "first", "b1")
    before = manifest(tmp_path / "first")
    again = cli("provision", "batch", "--model", "button", "--count", "5",
                "--out", str(tmp_path / "second"), "--name", "b1", ok=False)
    assert again.returncode == 1
    assert "error: batch 'b1' exists already" in again.stderr
    assert not (tmp_path / "second").exists()
    # Into the same folder: the first batch's files stay as they were.
    same = cli("provision", "batch", "--model", "button", "--count", "2",
               "--out", str(tmp_path / "first"), "--name", "b1", ok=False)
    assert same.returncode == 1
    assert manifest(tmp_path / "first") == before
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == sorted(
        [r["serial"] for r in before] + ["labels-0001.svg", "manifest.csv", "manifest.json"])


def test_household_claim_and_configure(cli, tmp_path):
    out = tmp_path / "batch"
    provision(cli, out, "b1", count=3)
    rows = manifest(out)
    home = new_household(cli, "Home")
    neighbour = new_household(cli, "Neighbour")
    assert home != neighbour

    code = rows[0]["claim_code"]
    done = cli("device", "claim", code.lower(), "--household", str(home))
    assert f"claimed device {rows[0]['device_id']} ({rows[0]['serial']})" in done.stdout

    again = cli("device", "claim", code, "--household", str(neighbour), ok=False)
    assert again.returncode == 1 and "already claimed" in again.stderr

    typo = typo_of(rows[1]["claim_code"])
    refused = cli("device", "claim", typo, "--household", str(home), ok=False)
    assert refused.returncode == 1 and "not a valid claim code" in refused.stderr

    nobody = cli("device", "claim", rows[1]["claim_code"], "--household", "9999", ok=False)
    assert nobody.returncode == 1 and "no household 9999" in nobody.stderr

    device = rows[0]["device_id"]
    done = cli("device", "configure", device, "--household", str(home), "--slot", "0",
               "--product", "COFFEE-BEANS-1KG", "--quantity", "2")
    assert f"device {device} slot 0: 2 x COFFEE-BEANS-1KG" in done.stdout

    stranger = cli("device", "configure", device, "--household", str(neighbour),
                   "--slot", "0", "--product", "COFFEE-BEANS-1KG", ok=False)
    assert stranger.returncode == 1
    assert f"error: no device {device} in this household" in stranger.stderr

    unclaimed = cli("device", "configure", rows[2]["device_id"], "--household", str(home),
                    "--product", "TEA", ok=False)
    assert unclaimed.returncode == 1 and "no device" in unclaimed.stderr

    bad = cli("device", "configure", device, "--household", str(home),
              "--product", "COFFEE-BEANS-1KG", "--quantity", "0", ok=False)
    assert bad.returncode == 2
    assert "Invalid value for '--quantity'" in bad.stderr


def typo_of(code: str) -> str:
    """The code with one symbol of its body replaced by another valid symbol."""
    plain = claim_codes.normalize(code)
    other = next(c for c in claim_codes.ALPHABET if c != plain[5])
    typo = plain[:5] + other + plain[6:]
    assert not claim_codes.is_valid(typo)
    return typo


def test_household_settings_and_sensor_slots_from_the_command_line(cli, tmp_path):
    out = tmp_path / "b"
    provision(cli, out, "settings", count=1)
    device = manifest(out)[0]
    household = new_household(cli, "Flat")
    cli("device", "claim", device["claim_code"], "--household", str(household))
    done = cli("device", "configure", device["device_id"], "--household", str(household),
               "--product", "DETERGENT-2KG", "--kind", "sensor", "--safety-days", "3")
    assert "(sensor)" in done.stdout
    done = cli("household", "settings", str(household), "--hold-window", "60",
               "--max-orders-per-day", "2", "--allow-multiple-open")
    assert "hold window 60 s, max 2 orders/day" in done.stdout
    assert "multiple open orders allowed" in done.stdout
    bad = cli("household", "settings", str(household), "--hold-window", "-1", ok=False)
    assert bad.returncode == 2 and "Invalid value" in bad.stderr


def test_a_server_without_the_manufacturer_extra_runs_and_says_what_to_install(tmp_path):
    """The server never imports provisioning: with a manufacturer tool missing (here
    segno, hidden from imports), `replenish` still loads, keeps the server's release
    commands, and `replenish provision` names the extra to install."""
    hidden = "import sys; sys.modules['segno'] = None; from backend.cli import main; main()"
    env = Cli(tmp_path).env

    def replenish(*args):
        return subprocess.run([sys.executable, "-c", hidden, *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    refused = replenish("provision", "batch", "--model", "button", "--count", "1")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "pip install 'replenish[manufacturer]'" in refused.stderr
    assert "missing segno" in refused.stderr
    release = replenish("release", "--help")
    assert release.returncode == 0
    assert {"pause", "resume", "status"} <= set(re.findall(r"^  (\w+)", release.stdout, re.M))
    assert "publish" not in release.stdout
    assert replenish("db", "upgrade").returncode == 0


def test_catalogue_add_set_import_and_list(cli, tmp_path):
    cli("catalogue", "add", "TEA-GREEN-100", "--name", "Green tea", "--brand", "Leaf & Co",
        "--pack-size", "100", "--unit", "pcs", "--price", "4.99", "--gtin", "4006381333931")
    assert "changed TEA-GREEN-100: available, price_minor" in cli(
        "catalogue", "set", "TEA-GREEN-100", "--price", "5.49", "--unavailable").stdout
    bad = cli("catalogue", "set", "TEA-GREEN-100", "--price", "5.499", ok=False)
    assert bad.returncode == 1 and "decimals" in bad.stderr
    sheet = tmp_path / "products.csv"
    sheet.write_text("sku,name,pack_size,unit,currency,price\n"
                     "MATCHA-30G,Matcha,30,g,JPY,1200\nCOFFEE-BEANS-1KG,Coffee beans,1000,g,"
                     "EUR,21.50\n", encoding="utf-8")
    assert "1 added, 1 changed" in cli("catalogue", "import", str(sheet)).stdout
    sheet.write_text("sku,name,pack_size,unit,currency,price\nBAD,Bad,1,kg,EUR,1\n")
    bad = cli("catalogue", "import", str(sheet), ok=False)
    assert bad.returncode == 1 and "line 2" in bad.stderr
    listing = cli("catalogue", "list").stdout
    assert "TEA-GREEN-100\tLeaf & Co Green tea 100 pcs\t€5.49\tunavailable" in listing
    assert "MATCHA-30G\tMatcha 30 g\t¥1,200\tavailable" in listing
    assert "COFFEE-BEANS-1KG\tReplenish Roasters Coffee beans 1 kg\t€21.50" in listing
    assert "BAD" not in listing
