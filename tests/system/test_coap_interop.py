"""Interoperability: libcoap's coap-client (a second, independent CoAP stack) talks to
the running backend: resource discovery, a signed event, and a malformed one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from backend import protocol
from backend.protocol import Event, Kind, Result
from devtools import system

_NAMES = ("coap-client", "coap-client-notls")


def coap_client() -> str:
    """libcoap's client; Debian names it coap-client-notls (plus TLS variants)."""
    for attempt in range(2):
        for name in _NAMES:
            if found := shutil.which(name):
                return found
        if attempt == 0:
            system.apt_install("libcoap3-bin")
    system.unavailable(f"none of {_NAMES} found even after installing libcoap3-bin")
    raise AssertionError("unreachable")


def run_client(*args: str) -> subprocess.CompletedProcess:
    # -B 10: libcoap gives up after 10 s; the subprocess timeout bounds everything else.
    done = subprocess.run([coap_client(), "-B", "10", *args], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done
    return done


def response_code(debug_output: bytes) -> str:
    """The code of the response libcoap processed, from its -v 7 trace."""
    codes = re.findall(rb"process incoming (\d\.\d\d) response", debug_output)
    assert len(codes) == 1, debug_output.decode(errors="replace")
    return codes[0].decode()


def identity(device) -> tuple[bytes, bytes]:
    data = json.loads((device.bundle_dir / "identity.json").read_text())
    return bytes.fromhex(data["key"]), bytes.fromhex(data["device_id"])


def test_well_known_core_lists_the_event_resource(world):
    port = world.settings.coap_port
    out = run_client(f"coap://127.0.0.1:{port}/.well-known/core").stdout.decode()
    links = {}
    for link in out.strip().split(","):
        target, _, params = link.partition(";")
        links[target] = dict(p.split("=", 1) for p in params.split(";") if "=" in p)
    assert "</ev>" in links, out
    assert links["</ev>"]["rt"] == '"replenish.event"'
    assert links["</ev>"]["ct"].strip('"') == "17"


def test_signed_event_from_coap_client_creates_an_order(world, tmp_path):
    button = world.buttons[0]
    key, kid = identity(button)
    request = protocol.encode_event(key, kid, Event(seq=1, kind=Kind.PRESS, slot=0))
    (tmp_path / "event.cbor").write_bytes(request)
    answer_file = tmp_path / "answer.cbor"
    done = run_client("-m", "post", "-t", "17", "-f", str(tmp_path / "event.cbor"),
                      "-o", str(answer_file), "-v", "7", world.event_url)
    assert response_code(done.stdout + done.stderr) == "2.01"
    answer = protocol.decode_answer(key, protocol.parse_signed_event(request).tag,
                                    answer_file.read_bytes())
    assert answer.result is Result.CREATED
    assert answer.seq == 1 and answer.state == "confirmed" and answer.order is not None


def test_garbage_from_coap_client_is_a_bad_request(world, tmp_path):
    # Long enough for the whole diagnostic: no refusal is bigger than its request
    # (backend/coap/amplification.py).
    (tmp_path / "garbage.bin").write_bytes(b"\xff\xfe this is not CBOR, and it is long enough")
    done = run_client("-m", "post", "-t", "17", "-f", str(tmp_path / "garbage.bin"),
                      "-v", "7", world.event_url)
    assert response_code(done.stdout + done.stderr) == "4.00"
    assert b"CBOR" in done.stdout + done.stderr
