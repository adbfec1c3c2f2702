"""The simulated station joins on the virtual clock and fails as scripted; when it holds
an address its datagrams are real UDP on loopback (bounded waits, no wall-clock
assertions)."""

import socket
import threading

import pytest

from devtools.esp32sim.harness import Script, snippet_device

JOIN = """
import network, time, machine
sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
start = time.ticks_ms()
sta.connect("home", %r)
while not sta.isconnected() and time.ticks_diff(time.ticks_ms(), start) < 20000:
    time.sleep_ms(50)
print("connected", sta.isconnected(), "status", sta.status(), "ms",
      time.ticks_diff(time.ticks_ms(), start))
machine.deepsleep(1000)
"""


def _join(tmp_path, password="hunter22", fault=None):
    script = Script()
    if fault:
        script.faults.append((0, 10 ** 12, fault))
    run = snippet_device("esp32", JOIN % password, tmp_path, script=script).boot()
    assert run.end == "deepsleep", run.out
    words = run.stdout.split()
    return words[1] == "True", int(words[3]), int(words[5]), run.out["energy"]


def test_a_join_scans_associates_and_leases_on_the_virtual_clock(tmp_path):
    ok, status, ms, energy = _join(tmp_path)
    assert ok and status == 1010  # STAT_GOT_IP
    assert 500 < ms < 1000  # fast scan to channel 6, association, handshake, DHCP
    assert energy["assoc"] > 0 and energy["dhcp"] > 0


@pytest.mark.parametrize("password, fault, status", [
    ("hunter22", "ap_absent", 201),  # STAT_NO_AP_FOUND
    ("wrong-one", None, 202),  # STAT_WRONG_PASSWORD
])
def test_scripted_join_failures(tmp_path, password, fault, status):
    ok, got, ms, _energy = _join(tmp_path, password, fault)
    assert not ok and got == status and ms >= 20000


def test_slow_dhcp(tmp_path):
    ok, _status, ms, energy = _join(tmp_path, fault="slow_dhcp")
    assert ok and ms > 8000 and energy["dhcp"] >= 8000000


SEND = """
import network, socket, time, machine
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = socket.getaddrinfo("127.0.0.1", %d)[0][-1]
try:
    s.sendto(b"early", addr)
except OSError as err:
    print("offline", err.args[0])
sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
sta.connect("home", "hunter22")
while not sta.isconnected():
    time.sleep_ms(50)
s.sendto(b"ping", addr)
s.settimeout(2)
print("answer", s.recvfrom(64)[0])
machine.deepsleep(1000)
"""


def test_datagrams_are_real_udp_once_connected(tmp_path):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(30)

    def echo():
        data, addr = server.recvfrom(64)
        server.sendto(data.upper(), addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        run = snippet_device("esp32c6", SEND % server.getsockname()[1], tmp_path).boot()
    finally:
        thread.join(30)
        server.close()
    assert "offline 113" in run.stdout  # EHOSTUNREACH: no route before the join
    assert "answer b'PING'" in run.stdout


def test_an_unreachable_backend_costs_virtual_time_not_real_time(tmp_path):
    source = SEND.replace('print("answer", s.recvfrom(64)[0])', """
try:
    s.recvfrom(64)
except OSError as err:
    print("timeout", err.args[0], time.ticks_ms() > 2000)""")
    script = Script(faults=[(0, 10 ** 12, "backend_unreachable")])
    run = snippet_device("esp32", source % 9, tmp_path, script=script).boot()
    assert "timeout 110 True" in run.stdout  # ETIMEDOUT after 2 s of virtual time
