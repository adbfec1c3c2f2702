"""Network faults between devices and the backend: a seeded lossy UDP relay
(devtools/faults/relay.py) that drops, duplicates, delays and reorders datagrams both ways.

- The real firmware on the MicroPython unix port presses through the relay; what the
  retransmission budget cannot deliver stays in its offline queue and goes out with
  `flush`. Every press ends up stored once, and the button has exactly one order.
- The load generator's devices (which keep unanswered events, as the firmware does)
  through the relay: every event is answered, verified and stored once, one order per
  device.
"""

import asyncio
import json
import os
import random
import subprocess

import pytest
from sqlalchemy import func, select

from backend.storage.models import Device, Event, Order
from devtools.bench import loadgen
from devtools.bench.loadgen import Workload
from devtools.faults.devices import KeepingLoadGenerator
from devtools.faults.relay import Faults, LossyRelay
from devtools.unix_device import FIRMWARE_DIR, micropython_binary
from tests.conftest import make_world
from tests.devtools.test_bench_loadgen import fleet_of

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the network here
PRESSES, FLUSHES = 4, 8


def _counts(backend, device_id: str) -> tuple[int, int]:
    with backend.sessions() as session:
        pk = session.scalar(select(Device.id).where(Device.device_id == device_id))
        return (session.scalar(select(func.count()).select_from(Event)
                               .where(Event.device_pk == pk)),
                session.scalar(select(func.count()).select_from(Order)
                               .where(Order.device_pk == pk)))


@SQLITE
def test_firmware_presses_through_a_lossy_network_order_once(backend, tmp_path):
    seed = random.randrange(2**32)
    world = make_world(backend, tmp_path / "fleet", buttons=2, hold_window_s=3600)
    # The first datagram each way is lost and the second arrives twice, whatever the seed
    # (a press makes only a handful of datagrams: the dice alone sometimes deal no loss).
    faults = Faults(drop=0.3, duplicate=0.2, reorder=0.2, scripted=("drop", "duplicate"))
    with LossyRelay(("127.0.0.1", backend.coap_port), faults, seed) as relay:
        for button in world.buttons:
            identity_file = button.bundle_dir / "identity.json"
            identity = json.loads(identity_file.read_text())
            identity_file.write_text(json.dumps({**identity, "coap_port": relay.port}))
            commands = ["press"] * PRESSES + ["flush"] * FLUSHES + ["stats", "quit"]
            done = subprocess.run(
                [micropython_binary(), str(FIRMWARE_DIR / "main_unix.py"),
                 str(button.bundle_dir)],
                input="".join(c + "\n" for c in commands), capture_output=True, text=True,
                timeout=300, env={**os.environ, "REPLENISH_ACK_TIMEOUT_MS": "300",
                                  "REPLENISH_MAX_RETRANSMIT": "4"})
            why = f"seed {seed}, relay {dict(relay.stats)}:\n{done.stdout}{done.stderr}"
            assert done.returncode == 0, why
            assert "STATS queued=0 " in done.stdout, why  # nothing left on the device
            # Every press stored once (a resynchronised press is stored under its new
            # number only), and one order for the button: the first press's.
            assert _counts(backend, button.device_id) == (PRESSES, 1), why
    print(f"seed {seed}: relay {dict(relay.stats)}")
    assert relay.stats["up_dropped"] and relay.stats["down_dropped"]
    assert relay.stats["up_duplicated"] + relay.stats["down_duplicated"]


@SQLITE
def test_load_generator_devices_through_a_lossy_network(backend, tmp_path, monkeypatch):
    # A short ACK_TIMEOUT, as the firmware test sets REPLENISH_ACK_TIMEOUT_MS: the same
    # retransmission budget (MAX_RETRANSMIT 4), reached in seconds rather than a minute.
    monkeypatch.setattr(loadgen, "ACK_TIMEOUT", 0.3)
    seed = random.randrange(2**32)
    random.seed(seed)
    fleet = fleet_of(make_world(backend, tmp_path / "fleet", buttons=24,
                                hold_window_s=3600).buttons)
    workload = Workload(fleet)
    workload.prepare(len(fleet) * PRESSES)
    answers = {}

    def on_answer(request, msg, answer):
        if answer is not None:
            answers[(request.device, request.seq)] = (msg.code, answer.order)

    async def run(port):
        gen = KeepingLoadGenerator("127.0.0.1", port, workload, sockets=len(fleet),
                                   on_answer=on_answer)
        await gen.open()
        try:
            held = await gen.run_until_all_answered(window=len(fleet), round_s=60)
            return held, gen.kept
        finally:
            gen.close()

    with LossyRelay(("127.0.0.1", backend.coap_port), Faults(), seed) as relay:
        held, kept = asyncio.run(run(relay.port))
    why = f"seed {seed}: relay {dict(relay.stats)}, kept {kept}"
    print(why)
    assert held == 0, why
    assert len(answers) == len(fleet) * PRESSES, why
    codes = sorted(code for code, _order in answers.values())
    assert codes.count(65) == len(fleet), why  # 2.01 once per device, then 2.03
    assert set(codes) == {65, 67}, why
    for device in fleet:
        assert _counts(backend, device.kid.hex()) == (PRESSES, 1), why
