"""The real things around a simulated board: the backend on loopback (SQLite, as
`replenish run` has it), a provisioned and claimed device, its flash image built by
the manufacturer's tooling (provisioning/bundle.py), and the backend's view of what
the device delivered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from sqlalchemy import select

from backend.accounts import devices, households
from backend.config import Settings, SimulatorSettings
from backend.runtime import Backend
from backend.storage import db
from backend.storage.models import Device, Event, Order
from hardware.validate import load_board
from provisioning.batch import ProvisionedDevice, provision_batch
from provisioning.bundle import MANIFEST, build_bundle

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "hardware" / "boards"
FIRMWARE = ROOT / "firmware"


def firmware_at(ref: str, into: Path) -> Path:
    """firmware/ as it was at a git revision (to show a fault before its fix)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "firmware"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "firmware"


def build_flash(identity: Path, board: Path | dict, out: Path,
                firmware_dir: Path = FIRMWARE) -> Path:
    """The device's flash contents (main.py, .mpy modules, bundle/): what the
    manufacturer's bundle holds minus bundle.json, which stays on the host."""
    if isinstance(board, dict):
        path = Path(tempfile.mkdtemp()) / f"{board['board']}.json"
        path.write_text(json.dumps(board))
        board = path
    staging = out.with_name(out.name + ".bundle")
    build_bundle(identity, board, staging, firmware_dir)
    (staging / MANIFEST).unlink()
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


class Backend_:
    """The real backend in a thread with its own event loop (aiocoap on loopback)."""

    def __init__(self, data_dir: Path):
        data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{data_dir / 'replenish.db'}"
        db.upgrade(url)
        self.settings = Settings(data_dir=data_dir, database_url=url, coap_host="127.0.0.1",
                                 coap_port=0, http_host="127.0.0.1", http_port=0,
                                 kek_hex=secrets.token_hex(32),
                                 simulator=SimulatorSettings(step_s=0.2, poll_s=0.05))
        self.backend = Backend(self.settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Backend_:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.backend.start(), self.loop).result(60)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.backend.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def coap_port(self) -> int:
        return self.backend.coap_port

    def provision(self, board: Path | dict, out: Path, release_key: str | None = None,
                  firmware=None) -> tuple[ProvisionedDevice, dict]:
        """One device of the board's model, claimed by a household, slot 0 configured;
        release_key: the manufacturer's Ed25519 public key (hex) for OTA updates;
        firmware: the provisioning.batch.Firmware its batch records (default: today's)."""
        profile = board if isinstance(board, dict) else load_board(board)
        b = self.backend
        with b.writer_sessions() as session, session.begin():
            made = provision_batch(session, b.keyring, model=profile["model"], count=1,
                                   out=out, coap_host="127.0.0.1", coap_port=b.coap_port,
                                   name=f"sim-{secrets.token_hex(3)}", labels=False,
                                   release_key=release_key,
                                   **({"firmware": firmware} if firmware else {}))
            household, _token = households.create(session, "Simulated household")
            household.hold_window_s = 0
            household.max_orders_per_day = None
            claimed = devices.claim(session, household, made[0].claim_code)
            kind = "sensor" if "sensor" in profile else "button"
            # A sensor orders below its floor from day one (a fifth of its capacity):
            # the forecast learns on the backend's wall clock, which the simulation's
            # virtual hours do not move (backend/orders/sensors.py).
            floor = profile["sensor"].get("capacity", 5000) // 5 if kind == "sensor" else None
            devices.configure_slot(session, claimed, 0, "DETERGENT-1L", 1, kind=kind,
                                   min_level=floor)
        return made[0], profile

    def events(self, device_id: str) -> list[tuple[int, int, int | None, int]]:
        """(seq, kind, remaining, result) of every event the backend stored, by seq."""
        with self.backend.sessions() as session:
            device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
            return [(e.seq, e.kind, e.remaining, e.result) for e in session.scalars(
                select(Event).where(Event.device_pk == device.id).order_by(Event.seq))]

    def orders(self, device_id: str) -> list[tuple[int, str, str]]:
        with self.backend.sessions() as session:
            device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
            return [(o.id, o.state, o.source) for o in session.scalars(
                select(Order).where(Order.device_pk == device.id).order_by(Order.id))]
