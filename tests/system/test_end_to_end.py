"""A press on the real firmware (MicroPython unix port) becomes a delivered order."""

import subprocess
import sys
import time
from datetime import datetime

import pytest
from sqlalchemy import select

from backend.storage.models import Order
from devtools import unix_device
from devtools.demo import report
from provisioning.batch import ProvisionedDevice
from tests.conftest import DATABASES

FAST_ACK_MS = 300


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_firmware_press_to_delivered_order(world, backend):
    button, other = world.buttons
    reports = unix_device.run_commands(button.bundle_dir, ["press", "press", "press"],
                                       ack_timeout_ms=FAST_ACK_MS)
    assert [r.pattern for r in reports] == ["ordered", "already_ordered", "already_ordered"]
    assert [r.result for r in reports] == [65, 67, 67]
    order_id = reports[0].order
    assert {r.order for r in reports} == {order_id}
    assert reports[1].seq > reports[0].seq  # never reused

    # A restarted firmware continues past its reserved block and is still suppressed.
    again = unix_device.run_commands(button.bundle_dir, ["press"], ack_timeout_ms=FAST_ACK_MS)
    assert again[0].pattern == "already_ordered" and again[0].seq > reports[-1].seq

    for _ in range(600):  # bounded wait for the simulator (0.2 s a stage)
        with backend.sessions() as session:
            order = session.get(Order, order_id)
            if order.state == "delivered":
                break
        time.sleep(0.02)
    with backend.sessions() as session:
        order = session.get(Order, order_id)
        assert [t.to_state for t in order.history] == [
            "pending", "confirmed", "placed", "shipped", "delivered"]
        assert order.history[0].actor == f"device:{button.device_id}"
        assert session.scalars(select(Order)).all() == [order]

    # After delivery, the next press orders again.
    after = unix_device.run_commands(button.bundle_dir, ["press"], ack_timeout_ms=FAST_ACK_MS)
    assert after[0].pattern == "ordered" and after[0].order != order_id


def test_unclaimed_firmware_shows_not_claimed(world):
    reports = unix_device.run_commands(world.unclaimed.bundle_dir, ["press"],
                                       ack_timeout_ms=FAST_ACK_MS)
    assert reports[0].pattern == "not_claimed" and reports[0].result == 131


def test_firmware_with_no_backend_shows_error(tmp_path, world, backend):
    # Point a copy of the bundle at a port where nothing answers: retransmissions, then
    # error. The port is held by a socket of ours that never answers, for the whole test:
    # a port only probed free could be taken meanwhile by another worker's backend or
    # CoAP client (the kernel hands out ephemeral ports at random), which would answer.
    import json
    import os
    import shutil
    import socket

    copy = tmp_path / "copy"
    shutil.copytree(world.buttons[0].bundle_dir, copy)
    identity = json.loads((copy / "identity.json").read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        identity["coap_port"] = silent.getsockname()[1]
        (copy / "identity.json").write_text(json.dumps(identity))
        reports = unix_device.run_commands(copy, ["press"], ack_timeout_ms=50)
        assert reports[0].pattern == "error" and reports[0].result is None
        # The reason names the address it tried, so a wrong bundle is found at once.
        shown = subprocess.run(
            [str(unix_device.micropython_binary()),
             str(unix_device.FIRMWARE_DIR / "main_unix.py"), str(copy)],
            input="press\nquit\n", capture_output=True, text=True, timeout=120,
            env={**os.environ, "REPLENISH_ACK_TIMEOUT_MS": "50"}).stdout
    assert f"no answer from {identity['coap_host']}:{identity['coap_port']}" in shown, shown


def test_make_demo_command_delivers_one_order_per_button():
    done = subprocess.run([sys.executable, "-m", "devtools.demo", "--presses", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 3 buttons, 3 orders, all delivered." in done.stdout
    assert done.stdout.count("-> delivered") == 3


def test_demo_report_flags_a_button_with_two_orders(tmp_path):
    device = ProvisionedDevice("s1", "00" * 8, "code", "button", tmp_path)
    t = datetime(2026, 1, 1)
    history = [("pending", t, "device"), ("delivered", t, "sim")]
    orders = {device.device_id: [(1, "delivered", 1, "X", history),
                                 (2, "delivered", 1, "X", history)]}
    assert report([device], orders) == [
        "button 1: 2 orders, 2 delivered (expected exactly one delivered order)"]
    assert report([device], {device.device_id: orders[device.device_id][:1]}) == []
