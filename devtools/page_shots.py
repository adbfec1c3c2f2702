"""Screenshots of every page in docs/web.md at 390 and 1280 px, of any checkout.

    .venv/bin/python devtools/page_shots.py OUT_DIR [--tree CHECKOUT]

Builds one world through the interfaces every version has — `replenish run` and the
`replenish` command, the real firmware on the MicroPython unix port, the web forms —
so an older checkout (`git worktree add /tmp/before c084fd3`) is shot the same way as
this one: run it with this venv and `--tree /tmp/before` (its code comes first on the
path). Only the sensor's past level history is written into SQLite directly (a level
report gets the time it arrives). Chromium is Debian's, driven by Playwright, as in
tests/backend/web/test_browser.py. The PNGs are then reduced to a palette (Pillow),
small enough to keep in git (docs/screenshots/).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
WIDTHS = {390: 844, 1280: 900}
CHROMIUM_FLAGS = ["--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"]
# (file name, path, who looks): the pages of docs/web.md's table.
PAGES = [
    ("login", "/login", None), ("register", "/register", None),
    ("devices", "/devices", "household"), ("device-claim", "/devices/claim", "household"),
    ("claim-qr", "/claim/{code}", "household"),
    ("device-button", "/devices/{button}", "household"),
    ("device-scale", "/devices/{scale}", "household"),
    ("slot-button", "/devices/{button}/slots/0", "household"),
    ("slot-sensor-chart", "/devices/{scale}/slots/0", "household"),
    ("settings", "/settings", "household"), ("orders", "/orders", "household"),
    ("order", "/orders/{order}", "household"), ("notifications", "/notifications", "household"),
    ("account-password", "/account/password", "household"),
    ("account-tokens", "/account/tokens", "household"),
    ("operator-fleet", "/operator/fleet", "operator"),
    ("operator-revoke", "/operator/devices/{spare}/revoke", "operator"),
    ("operator-releases", "/operator/releases", "operator"),
    ("operator-batches", "/operator/batches", "operator"),
    ("operator-catalogue", "/operator/catalogue", "operator"),
]


class World:
    """`replenish run` on a fresh data folder of `tree`, and its command line."""

    def __init__(self, tree: Path, scratch: Path):
        self.tree, self.scratch = tree, scratch
        self.env = {**os.environ, "PYTHONPATH": str(tree),
                    "REPLENISH_DATA_DIR": str(scratch / "data"),
                    "REPLENISH_COAP_HOST": "127.0.0.1", "REPLENISH_COAP_PORT": "0",
                    "REPLENISH_HTTP_PORT": "0", "REPLENISH_ACK_TIMEOUT_MS": "2000"}
        for name in ("DATABASE_URL", "REPLENISH_KEK", "REPLENISH_KEK_FILE",
                     "REPLENISH_PUBLIC_COAP", "REPLENISH_PUBLIC_URL"):
            self.env.pop(name, None)
        self.process = None

    def replenish(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([sys.executable, "-c", "from backend.cli import main; main()",
                               *args], cwd=self.tree, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"replenish {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> str:
        self.replenish("db", "upgrade")
        log = self.scratch / "run.log"
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from backend.cli import main; main()", "run"],
                cwd=self.tree, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        for _ in range(600):  # bounded: a minute to start
            text = log.read_text()
            if "web app listening" in text or self.process.poll() is not None:
                break
            time.sleep(0.1)
        coap = re.search(r"CoAP ingest listening on udp 127\.0\.0\.1:(\d+) ", text)
        http = re.search(r"web app listening on http://127\.0\.0\.1:(\d+)/", text)
        if not (coap and http):
            raise RuntimeError(f"replenish run did not start:\n{text}")
        self.env["REPLENISH_COAP_PORT"] = coap.group(1)
        return f"http://127.0.0.1:{http.group(1)}"

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)

    def provision(self, model: str, count: int, out: str, *extra: str) -> list[dict]:
        text = self.replenish("provision", "batch", "--model", model, "--count", str(count),
                              "--out", str(self.scratch / out), "--coap-host", "127.0.0.1",
                              "--coap-port", self.env["REPLENISH_COAP_PORT"], *extra)
        return [{"serial": m[1], "device_id": m[2], "code": m[3],
                 "bundle": self.scratch / out / m[1]}
                for m in re.finditer(r"^(\S+)\s+([0-9a-f]{16})\s+claim code (\S+)$", text, re.M)]

    def firmware(self, bundle: Path, commands: list[str], **env: str) -> str:
        done = subprocess.run([str(Path(sys.executable).with_name("micropython")),
                               str(self.tree / "firmware/main_unix.py"), str(bundle)],
                              input="".join(c + "\n" for c in commands) + "quit\n",
                              capture_output=True, text=True, timeout=120,
                              env={**self.env, **env})
        return done.stdout

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.scratch / "data/replenish.db", timeout=30)

    def until(self, query: str, args: tuple, want) -> None:
        for _ in range(600):  # bounded: a minute
            with self.db() as conn:
                row = conn.execute(query, args).fetchone()
            if row and row[0] == want:
                return
            time.sleep(0.1)
        raise RuntimeError(f"never {want!r}: {query} {args}")


def build(world: World, base: str, page) -> dict:
    """A household with a button (a delivered and a pending order), a scale with five
    days of level history, a spare unclaimed device, and an operator."""
    buttons = world.provision("button", 3, "buttons")
    try:
        scale = world.provision("scale", 1, "scales", "--board", "esp32-loadcell-hx711")[0]
    except RuntimeError:  # a version without the scale model: a button as a sensor
        scale = buttons.pop()
    page.goto(f"{base}/register")
    page.fill("input[name=household_name]", "Our flat")
    page.fill("input[name=email]", "ann@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    for device in (buttons[0], scale):
        page.goto(f"{base}/devices/claim")
        page.fill("input[name=code]", device["code"])
        page.click("main form button[type=submit]")
        page.wait_for_load_state()
    world.replenish("device", "configure", buttons[0]["device_id"], "--household", "1",
                    "--product", "DETERGENT-1L", "--quantity", "2")
    world.replenish("device", "configure", scale["device_id"], "--household", "1",
                    "--product", "DETERGENT-1L", "--kind", "sensor", "--safety-days", "1")
    world.replenish("household", "settings", "1", "--hold-window", "0")
    world.firmware(buttons[0]["bundle"], ["press"])
    with world.db() as conn:
        first = conn.execute("SELECT max(id) FROM orders").fetchone()[0]
    world.until("SELECT state FROM orders WHERE id = ?", (first,), "delivered")
    world.replenish("household", "settings", "1", "--hold-window", "900")
    world.firmware(buttons[0]["bundle"], ["status"], REPLENISH_BATTERY_MV="2950",
                   REPLENISH_RSSI_DBM="-61")
    world.firmware(buttons[0]["bundle"], ["press"])
    with world.db() as conn:
        pending = conn.execute("SELECT max(id) FROM orders").fetchone()[0]
        pk = conn.execute("SELECT id FROM devices WHERE device_id = ?",
                          (scale["device_id"],)).fetchone()[0]
        now = datetime.now(UTC).replace(tzinfo=None)
        for n in range(20):  # 150 ml a day for five days, a report every six hours
            conn.execute("INSERT INTO events (device_pk, seq, kind, slot, remaining, tag, "
                         "received_at, result) VALUES (?, ?, 2, 0, ?, ?, ?, 68)",
                         (pk, 10**12 + n, int(900 - 37.5 * n), secrets.token_bytes(32),
                          (now - timedelta(hours=6 * (20 - n))).isoformat(sep=" ")))
    (scale["bundle"] / "board.json").write_text(
        (world.tree / "hardware/boards/esp32-loadcell-hx711.json").read_text())
    world.firmware(scale["bundle"], ["tare", "weight 1000", "calibrate 1000", "weight 150",
                                     "wake 0"])
    world.replenish("user", "create-operator", "ops@example.org",
                    stdin=f"{PASSWORD}\n{PASSWORD}\n")
    return {"button": buttons[0]["device_id"], "scale": scale["device_id"],
            "order": pending, "code": buttons[1]["code"], "spare": buttons[1]["device_id"]}


def log_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_load_state()


def shoot(browser, base: str, ids: dict, out: Path) -> tuple[list[Path], list[str]]:
    """The screenshots, and the pages wider than the window (they scroll sideways)."""
    shots, wide = [], []
    for width, height in WIDTHS.items():
        for role in (None, "household", "operator"):
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            if role is not None:
                log_in(page, base, "ann@example.org" if role == "household"
                       else "ops@example.org")
            for name, path, who in PAGES:
                if who != role:
                    continue
                page.goto(base + path.format(**ids))
                if page.evaluate("document.documentElement.scrollWidth > innerWidth"):
                    wide.append(f"{name}-{width}")
                target = out / f"{name}-{width}.png"
                page.screenshot(path=str(target), full_page=True)
                shots.append(target)
            context.close()
    return shots, wide


def reduce(paths: list[Path], colours: int = 128) -> None:
    """A palette of `colours` and zlib's best: flat page colours lose nothing visible."""
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to shoot")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="page-shots-"))
    world = World(args.tree.resolve(), scratch)
    try:
        base = world.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                                 headless=True, chromium_sandbox=False,
                                                 args=CHROMIUM_FLAGS)
            setup = browser.new_context()
            ids = build(world, base, setup.new_page())
            setup.close()
            shots, wide = shoot(browser, base, ids, args.out)
            browser.close()
    finally:
        world.stop()
    reduce(shots)
    total = sum(p.stat().st_size for p in shots)
    print(json.dumps({"pages": len(shots), "bytes": total, "wider_than_window": wide},
                     default=str))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
