"""Backend down: presses go to the flash queue; back up: each arrives once, in order."""

import socket

from sqlalchemy import select

from backend.storage.models import Device, Event, Order
from devtools import unix_device
from devtools.mpy import FIRMWARE, popen_script
from tests.conftest import BackendThread, make_world

FAST_ACK_MS = 100


def run_firmware(bundle, commands):
    proc = popen_script(FIRMWARE / "main_unix.py", bundle,
                        env={"REPLENISH_ACK_TIMEOUT_MS": str(FAST_ACK_MS),
                             "REPLENISH_MAX_RETRANSMIT": "2"})
    out, err = proc.communicate("".join(c + "\n" for c in commands) + "quit\n", timeout=120)
    assert proc.returncode == 0, err
    return [line for line in out.splitlines() if not line.startswith("# ")]


def test_backend_down_three_presses_then_exactly_three_events_in_order(settings, tmp_path):
    with BackendThread(settings) as first:
        port = first.coap_port
        world = make_world(first, tmp_path / "bundles", buttons=2)
    a, b = world.buttons
    # Backend down: every press gets no answer and goes into the flash queue. While it
    # is down a silent socket of the test holds its port: a port left free could be
    # handed to another worker's socket (the kernel gives out ephemeral ports at
    # random), and the second backend below could not have it back.
    down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        down.bind(("127.0.0.1", port))
        offline = run_firmware(a.bundle_dir, ["press", "press", "press", "stats"])
    finally:
        down.close()
    assert [line.split()[:2] for line in offline[:3]] == [["LED", "error"]] * 3
    seqs = [int(line.split()[2].split("=")[1]) for line in offline[:3]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert offline[3] == "STATS queued=3 dropped=0 reported=0 flash_writes=4"

    # The same backend (database, keys) comes back on the same port; the firmware
    # restarts (new process: the queue came from flash) and flushes.
    with BackendThread(settings.with_(coap_port=port)) as second:
        assert second.coap_port == port
        back = run_firmware(a.bundle_dir, ["flush", "flush", "stats"])
        other = unix_device.run_commands(b.bundle_dir, ["press"], ack_timeout_ms=FAST_ACK_MS)
        with second.sessions() as session:
            device = session.scalars(select(Device).where(Device.device_id == a.device_id)).one()
            events = session.scalars(select(Event).where(Event.device_pk == device.id)
                                     .order_by(Event.id)).all()
            orders = session.scalars(select(Order).where(Order.device_pk == device.id)).all()
            assert [e.seq for e in events] == seqs  # exactly three, in seq order
            assert [e.result for e in events] == [65, 67, 67]  # one order, two suppressed
            assert len(orders) == 1 and {e.order_id for e in events} == {orders[0].id}
            states = [e.order_state for e in events]  # as answered (backend's state names)
    order_id = orders[0].id
    assert back[:3] == [
        f"LED ordered seq={seqs[0]} result=65 order={order_id} state={states[0]}",
        f"LED already_ordered seq={seqs[1]} result=67 order={order_id} state={states[1]}",
        f"LED already_ordered seq={seqs[2]} result=67 order={order_id} state={states[2]}",
    ]
    assert back[3:] == ["FLUSH delivered=3 queued=0", "FLUSH delivered=0 queued=0",
                        # the queue head moves in RTC memory: no flash write
                        "STATS queued=0 dropped=0 reported=0 flash_writes=0"]
    assert other[0].pattern == "ordered"  # the other button was never held up
