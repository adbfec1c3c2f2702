"""The one wake routine (replenish/wake.py) on MicroPython, through a recording hardware
layer: what happens before the network, how failed wakes back off, what survives."""

import json

from devtools.mpy import run_snippet

KEY = bytes(range(32))

HW = r"""
import json, struct
from replenish import cbor, cose, protocol
from replenish.client import ClientError
from replenish.hal import Hardware
from replenish.hmac_sha256 import HmacSha256
from replenish.storage import FileStorage
from replenish.wake import Device

LOG = []
BUNDLE = "bundle"
RTC = {}  # survives a "reset" (a new Device), like RTC memory


class Flash(FileStorage):
    def write(self, name, data):
        LOG.append("flash " + name)
        FileStorage.write(self, name, data)


class Record:
    def __init__(self, index):
        self.index = index

    def read(self):
        return RTC.get(self.index)

    def write(self, data):
        RTC[self.index] = bytes(data)


class Led:
    def show(self, name):
        LOG.append("led " + name)

    def off(self):
        pass


class Peer:
    # answers every event at once: a press with 2.01, anything else with 2.04
    def __init__(self, up):
        self.up = up
        self.mac = HmacSha256(bytes(range(32)))
        self.seqs = []

    def request(self, code, path, payload=b"", content_format=None):
        if not self.up:
            LOG.append("lost")
            raise ClientError("no answer")
        body, _ = cose.verify(self.mac, payload)
        event = cbor.decode(body)
        self.seqs.append(event[1])
        result = protocol.CREATED if event[2] == protocol.KIND_PRESS else protocol.CHANGED
        answer = cbor.encode({1: event[1], 2: result})
        out, _ = cose.create(self.mac, answer, None, payload[-32:])
        return result, protocol.CONTENT_FORMAT, out


class FakeHw(Hardware):
    def __init__(self, reason, peer, crash_on_connect=False):
        self.storage = Flash(BUNDLE + "/state")
        self.led = Led()
        self.battery = None
        self.clock = None
        self.reason = reason
        self.peer = peer
        self.crash = crash_on_connect
        self.forgot = 0

    def rtc(self, index):
        return Record(index)

    def feed(self):
        LOG.append("feed")

    def wake_reason(self):
        return self.reason

    def connect(self, wifi, host, port):
        LOG.append("connect")
        if self.crash:
            raise KeyboardInterrupt  # a watchdog reset in the middle of the join
        return self.peer

    def forget_network(self):
        self.forgot += 1


def wake(reason, up=True, crash=False):
    peer = Peer(up)
    hw = FakeHw(reason, peer, crash)
    device = Device(hw, BUNDLE, BUNDLE)
    timer = device.wake()
    return device, hw, peer, timer
"""


def bundle(tmp_path, board=None):
    path = tmp_path / "bundle"
    (path / "state").mkdir(parents=True)
    (path / "identity.json").write_text(json.dumps({
        "device_id": "0011223344556677", "key": KEY.hex(), "model": "button",
        "coap_host": "127.0.0.1", "coap_port": 5683, "fw": "0.1.0"}))
    (path / "board.json").write_text(json.dumps(board or {"led": {"pin": 2}}))
    (path / "state" / "wifi.json").write_text(json.dumps({"ssid": "home", "password": "x"}))
    return path


def run(tmp_path, body):
    bundle(tmp_path)
    return run_snippet(HW + body, tmp_path, cwd=tmp_path).stdout.split("\n")


def test_a_press_is_in_flash_before_the_network_and_survives_a_reset_there(tmp_path):
    out = run(tmp_path, r"""
try:
    wake("button", crash=True)
except KeyboardInterrupt:
    pass
first_connect = LOG.index("connect")
print([e for e in LOG[:first_connect] if e.startswith("flash q.")])
print(LOG[:first_connect].count("led sending"))   # the LED says so before the join
LOG.clear()
# the next wake (RTC memory kept) sends the queued press first, then its own
device, hw, peer, timer = wake("button")
print(peer.seqs, len(device.queue), timer)
""")
    assert out[0] == "['flash q.0']"
    assert out[1] == "1"
    # both presses delivered in order, then the first heartbeat; next: the heartbeat day
    assert out[2] == "[1, 2, 3] 0 86400"


def test_failed_wakes_back_off_and_a_retry_that_delivers_nothing_counts(tmp_path):
    out = run(tmp_path, r"""
device, hw, peer, timer = wake("button", up=False)
print(len(device.queue), timer, hw.forgot)      # queued; retry after 30 s
device, hw, peer, timer = wake("timer", up=False)
print(len(device.queue), timer)                 # the retry failed too: 60 s
device, hw, peer, timer = wake("timer", up=True)
print(len(device.queue), timer, peer.seqs[:1])  # delivered: back to the day timer
""")
    assert out[0] == "1 30 1"  # no answer at all after a join: the cached AP is dropped
    assert out[1] == "1 60"
    assert out[2] == "0 86400 [1]"


def test_a_timer_wake_with_nothing_to_do_leaves_the_radio_off(tmp_path):
    out = run(tmp_path, r"""
device, hw, peer, timer = wake("button")          # first: press + heartbeat
LOG.clear()
device, hw, peer, timer = wake("timer")
print("connect" in LOG, timer)
""")
    assert out[0] == "False 86400"


def test_the_counter_continues_in_its_block_across_wakes_and_skips_it_after_a_power_cut(
        tmp_path):
    out = run(tmp_path, r"""
d, hw, peer, t = wake("button")
d, hw, peer, t = wake("button")
print(peer.seqs, LOG.count("flash seq.a") + LOG.count("flash seq.b"))
RTC.clear()                                       # power cut: RTC memory gone
d, hw, peer, t = wake("button")
print(peer.seqs[:2])
""")
    # first wake: press 1, heartbeat 2; second wake: press 3 - one reservation write
    assert out[0] == "[3] 1"
    # after the cut the queue head (RTC) is gone too: press 3's page goes out once more
    # (the backend answers it as a retransmission), then the new press skips to 33
    assert out[1] == "[3, 33]"
