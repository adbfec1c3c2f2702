"""`replenish demo`: three buttons, real firmware, real backend, orders to delivered.

Everything runs on this machine: a temporary SQLite database, the backend as its own
process (`replenish run`), each button's firmware on the MicroPython unix port.
Exit status 0 only if every button produced exactly one delivered order.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from backend.accounts import devices, households
from backend.accounts.keys import load_keyring
from backend.config import Settings, SimulatorSettings
from backend.orders.lifecycle import OPEN_STATES, State
from backend.storage import db
from backend.storage.models import Order
from devtools import unix_device
from provisioning.batch import provision_batch

PRODUCTS = [("DETERGENT-1L", 2), ("COFFEE-BEANS-1KG", 1), ("PAPER-TOWELS-6", 1)]
STEP_S = 1.0
HOLD_WINDOW_S = 2
_START_TIMEOUT_S = 30


def _say(text: str) -> None:
    print(text, flush=True)


_LISTENING = re.compile(r"CoAP ingest listening on udp [^ ]+:(\d+) .*"
                        r"web app listening on http://[^:]+:(\d+)/", re.S)


def _start_backend(settings: Settings, log_path: Path) -> tuple[subprocess.Popen, Settings]:
    """Start `replenish run` on free ports; return it and the ports it reported."""
    env = {**os.environ, "REPLENISH_DATA_DIR": str(settings.data_dir),
           "REPLENISH_COAP_HOST": settings.coap_host,
           "REPLENISH_COAP_PORT": str(settings.coap_port),
           "REPLENISH_HTTP_PORT": str(settings.http_port),
           "REPLENISH_SIM_STEP_S": str(settings.simulator.step_s),
           "REPLENISH_SIM_POLL_S": str(settings.simulator.poll_s)}
    env.pop("DATABASE_URL", None)
    env.pop("REPLENISH_KEK", None)
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "backend.cli", "run"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    for _ in range(int(_START_TIMEOUT_S / 0.1)):
        listening = _LISTENING.search(log_path.read_text())
        if listening:
            coap_port, http_port = map(int, listening.groups())
            return process, settings.with_(coap_port=coap_port, http_port=http_port)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"backend did not start:\n{log_path.read_text()[-2000:]}")


def _setup_household(settings: Settings, out: Path):
    keyring = load_keyring(settings, create=True)
    with db.transaction(settings.db_url) as session:
        made = provision_batch(session, keyring, model="button", count=len(PRODUCTS),
                               out=out, name=f"demo-{secrets.token_hex(3)}",
                               coap_host=settings.coap_host, coap_port=settings.coap_port)
        household, _token = households.create(session, "Demo household")
        household.hold_window_s = HOLD_WINDOW_S  # short, so the demo shows it and ends
        for device, (sku, quantity) in zip(made, PRODUCTS):
            claimed = devices.claim(session, household, device.claim_code)
            devices.configure_slot(session, claimed, 0, sku, quantity)
    return made


def _orders_by_device(settings: Settings) -> dict[str, list]:
    from backend.storage.models import Device

    engine = db.make_engine(settings.db_url)
    with db.make_sessionmaker(engine)() as session:
        rows = session.execute(select(Order, Device.device_id)
                               .join(Device, Device.id == Order.device_pk)
                               .order_by(Order.id)).all()
        found: dict[str, list] = {}
        for order, device_id in rows:
            history = [(t.to_state, t.at, t.actor) for t in order.history]
            found.setdefault(device_id, []).append((order.id, order.state, order.quantity,
                                                    order.product_sku, history))
    engine.dispose()
    return found


def _wait_delivered(settings: Settings, expected: int) -> dict[str, list]:
    deadline = time.monotonic() + HOLD_WINDOW_S + STEP_S * 3 + 60
    last_states = None
    while True:
        orders = _orders_by_device(settings)
        states = sorted(o[1] for rows in orders.values() for o in rows)
        if states != last_states:
            _say(f"  orders: {', '.join(states) or 'none'}")
            last_states = states
        settled = all(s not in OPEN_STATES for s in states)
        if (len(states) >= expected and settled) or time.monotonic() > deadline:
            return orders
        time.sleep(0.25)


def _press_all(made, presses: int) -> list[str]:
    problems = []
    for number, device in enumerate(made, 1):
        reports = unix_device.run_commands(device.bundle_dir, ["press"] * presses)
        shown = ", ".join(f"{r.pattern}" + (f" (order {r.order})" if r.order else "")
                          for r in reports)
        _say(f"  button {number} ({device.device_id}) pressed {presses}x: {shown}")
        expected = ["ordered"] + ["already_ordered"] * (presses - 1)
        if [r.pattern for r in reports] != expected:
            problems.append(f"button {number}: LED showed {[r.pattern for r in reports]}, "
                            f"expected {expected}")
    return problems


def report(made, orders) -> list[str]:
    problems = []
    for number, device in enumerate(made, 1):
        mine = orders.get(device.device_id, [])
        for order_id, state, quantity, sku, history in mine:
            start = history[0][1]
            path = " -> ".join(f"{to} +{(at - start).total_seconds():.1f}s"
                               for to, at, _actor in history)
            _say(f"  order {order_id} (button {number}, {quantity} x {sku}): {path}")
        delivered = [o for o in mine if o[1] == State.DELIVERED]
        if len(mine) != 1 or len(delivered) != 1:
            problems.append(f"button {number}: {len(mine)} orders, {len(delivered)} delivered"
                            " (expected exactly one delivered order)")
    return problems


def run_demo(presses: int = 4) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="replenish-demo-"))
    settings = Settings(data_dir=workdir, coap_host="127.0.0.1",
                        coap_port=0, http_port=0,
                        simulator=SimulatorSettings(step_s=STEP_S, poll_s=0.1))
    _say(f"Replenish demo in {workdir} (temporary SQLite database)")
    db.upgrade(settings.db_url)
    process, settings = _start_backend(settings, workdir / "backend.log")
    _say(f"backend running: CoAP udp 127.0.0.1:{settings.coap_port}, "
         f"web http://127.0.0.1:{settings.http_port}/ (log: {workdir / 'backend.log'})")
    try:
        made = _setup_household(settings, workdir / "bundles")
        _say(f"provisioned, claimed and configured {len(made)} buttons")
        problems = _press_all(made, presses)
        _say("following orders to delivered:")
        orders = _wait_delivered(settings, len(made))
        problems += report(made, orders)
    except Exception as err:  # say what went wrong instead of a bare traceback
        problems = [f"{type(err).__name__}: {err}"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    if problems:
        _say("DEMO FAILED:\n  " + "\n  ".join(problems))
        return 1
    _say(f"OK: {len(made)} buttons, {len(made)} orders, all delivered.")
    return 0
