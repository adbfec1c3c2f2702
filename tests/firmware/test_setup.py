"""Wi-Fi setup mode on MicroPython over loopback: only the form, only with the label code."""

import http.client
import json
import urllib.parse

from devtools.mpy import FIRMWARE, popen_script
from devtools.net import free_tcp_port

KEY = bytes(range(32))
SECRET = "7K3M-9QXZ"  # as printed on the label (Crockford base32, 8 symbols)


def bundle(tmp_path, secret=SECRET):
    path = tmp_path / "bundle"
    path.mkdir()
    fields = {"device_id": "0011223344556677", "key": KEY.hex(), "model": "button",
              "coap_host": "127.0.0.1", "coap_port": 9, "fw": "0.1.0"}
    if secret:
        fields["setup_secret"] = secret.replace("-", "")
    (path / "identity.json").write_text(json.dumps(fields))
    return path


def start(path, timeout_ms=60000):
    # The unix port has no getsockname(), so the test picks the port; if another socket
    # takes it before the firmware binds, the firmware exits and we try another one.
    for _attempt in range(5):
        port = free_tcp_port()
        proc = popen_script(FIRMWARE / "main_unix.py", path,
                            env={"REPLENISH_SETUP_TIMEOUT_MS": str(timeout_ms)})
        proc.stdin.write(f"setup {port}\nquit\n")
        proc.stdin.flush()
        for _ in range(50):
            line = proc.stdout.readline()
            if line.startswith("SETUP"):
                assert line.strip() == f"SETUP port={port}"
                return proc, port
            if not line:  # exited: the port was taken meanwhile (EADDRINUSE)
                break
        proc.communicate(timeout=60)
    raise AssertionError("no SETUP line")


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def post(port, **fields):
    return request(port, "POST", "/", urllib.parse.urlencode(fields),
                   {"Content-Type": "application/x-www-form-urlencoded"})


def finish(proc):
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_form_only_with_label_code_then_saved(tmp_path):
    path = bundle(tmp_path)
    proc, port = start(path)
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and b'name=code' in body and b"password" in body
    assert headers["Cache-Control"] == "no-store"
    status, headers, _body = request(port, "GET", "/generate_204")  # captive-portal probe
    assert status == 302 and headers["Location"] == "/"
    assert request(port, "GET", "/flash?addr=0")[0] == 302  # no other endpoint exists
    assert request(port, "PUT", "/")[0] == 405
    assert request(port, "POST", "/flash", "a=b")[0] == 404
    assert post(port, ssid="Home", password="hunter2hunter2", code="WRONG000")[0] == 403
    assert request(port, "POST", "/", "x" * 5000)[0] == 413
    assert post(port, ssid="", password="hunter2hunter2", code=SECRET)[0] == 400
    assert not (path / "state" / "wifi.json").exists()
    # lower case, I/L/O confusions and dashes are accepted as people type them
    status, _h, body = post(port, ssid="Home Wi-Fi", password="hunter2 & co", code="7k3m-9qxz")
    assert status == 200 and b"hunter2" not in body
    out = finish(proc)
    assert "SETUP saved ssid=Home Wi-Fi" in out
    assert SECRET.replace("-", "") not in out and "hunter2" not in out
    assert json.loads((path / "state" / "wifi.json").read_text()) == {
        "ssid": "Home Wi-Fi", "password": "hunter2 & co"}


def test_locks_after_five_wrong_codes(tmp_path):
    proc, port = start(bundle(tmp_path))
    for i in range(5):
        assert post(port, ssid="Home", password="hunter2hunter2", code=f"AAAAAAA{i}")[0] == 403
    assert "SETUP locked" in finish(proc)


def test_closes_itself_after_timeout(tmp_path):
    proc, _port = start(bundle(tmp_path), timeout_ms=300)
    assert "SETUP timeout" in finish(proc)


def test_refuses_without_a_setup_secret(tmp_path):
    proc = popen_script(FIRMWARE / "main_unix.py", bundle(tmp_path, secret=None))
    out = finish_with(proc, "setup 1\nquit\n")
    assert "SETUP refused: no setup secret in identity.json" in out and "# led error" in out


def finish_with(proc, text):
    out, err = proc.communicate(text, timeout=60)
    assert proc.returncode == 0, err
    return out


def test_low_battery_pattern_follows_the_answer(tmp_path):
    proc = popen_script(FIRMWARE / "main_unix.py", bundle(tmp_path),
                        env={"REPLENISH_BATTERY_MV": "2300", "REPLENISH_ACK_TIMEOUT_MS": "20",
                             "REPLENISH_MAX_RETRANSMIT": "0"})
    out = finish_with(proc, "press\nquit\n")
    leds = [line for line in out.splitlines() if line.startswith("# led ")]
    assert leds == ["# led sending", "# led error", "# led low_battery"]
