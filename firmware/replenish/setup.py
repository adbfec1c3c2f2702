"""Wi-Fi setup mode: one small HTTP form on the device's own access point.

Unlike the original Dash button's open setup network, this one
- runs on a WPA2 access point whose password is the device's setup secret (printed on
  its label; proof of possession), and the form asks for that secret again before it
  stores anything (the HTTP inside the AP is cleartext, so a neighbour who guessed
  nothing learns nothing);
- serves the form and nothing else: GET / is the form, any other GET is redirected to
  it (what captive-portal detection needs), POST / stores credentials, everything
  else is 404/405; there is no flash or file endpoint;
- closes itself after timeout_ms, after `max_failures` wrong secrets, or once
  credentials are stored (the device then reboots into normal mode);
- bounds every read (request line, headers, body) and never echoes a secret.

The listening socket and clock are passed in (the ESP32 layer binds the AP address,
the unix port binds loopback). serve() returns (result, ssid): result is SAVED,
TIMEOUT or LOCKED.
"""

from micropython import const

SAVED = "saved"
TIMEOUT = "timeout"
LOCKED = "locked"
_MAX_REQUEST = const(2048)
_MAX_BODY = const(512)
_CONN_TIMEOUT_S = const(3)
_ACCEPT_POLL_S = const(1)
_MAX_SSID = const(32)
_MAX_PASSWORD = const(63)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

_FORM = b"""<!doctype html><html><head><meta name=viewport content="width=device-width">
<title>Replenish setup</title></head><body><h1>Replenish: join your Wi-Fi</h1>
<form method=post action="/"><p><label>Wi-Fi name <input name=ssid maxlength=32 required></label>
<p><label>Wi-Fi password <input name=password type=password maxlength=63></label>
<p><label>Setup code from the label <input name=code maxlength=12 required></label>
<p><button>Save and restart</button></form></body></html>
"""


def normalize_code(text):
    """Crockford base32 as people type it: case, dashes, spaces, I/L->1, O->0."""
    out = []
    for ch in text.upper():
        if ch in "- ":
            continue
        if ch in "IL":
            ch = "1"
        elif ch == "O":
            ch = "0"
        if ch not in _CROCKFORD:
            return None
        out.append(ch)
    return "".join(out)


def same(a, b):
    """Constant-time comparison of two strings."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a.encode(), b.encode()):
        diff |= x ^ y
    return diff == 0


def _unquote(text):
    text = text.replace("+", " ")
    out = bytearray()
    i = 0
    raw = text.encode()
    while i < len(raw):
        c = raw[i]
        if c == 37 and i + 2 < len(raw):  # '%XX'
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return out.decode()


def parse_form(body):
    fields = {}
    for pair in body.split("&"):
        if "=" in pair:
            name, value = pair.split("=", 1)
            fields[_unquote(name)] = _unquote(value)
    return fields


class SetupServer:
    def __init__(self, listener, clock, secret, save, timeout_ms=300000, max_failures=5,
                 log=None, tick=None):
        if not secret or normalize_code(secret) is None:
            raise ValueError("no setup secret: provision one (label) before setup mode")
        self._listener = listener
        self._clock = clock
        self._secret = normalize_code(secret)
        self._save = save  # save(ssid, password): store the credentials
        self._timeout_ms = timeout_ms
        self._max_failures = max_failures
        self._log = log
        self._tick = tick  # feeds the watchdog: setup mode outlasts its 60 s
        self.failures = 0
        self.requests = 0

    def _note(self, text):
        if self._log is not None:
            self._log(text)

    def serve(self):
        start = self._clock.ticks_ms()
        self._listener.settimeout(_ACCEPT_POLL_S)
        while True:
            if self._tick is not None:
                self._tick()
            if self._clock.ticks_ms() - start >= self._timeout_ms:
                return TIMEOUT, None
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                continue  # accept timed out: check the deadline
            try:
                conn.settimeout(_CONN_TIMEOUT_S)
                saved = self._handle(conn)
            except (OSError, ValueError, UnicodeError):
                saved = None
            finally:
                conn.close()
            if saved is not None:
                return SAVED, saved
            if self.failures >= self._max_failures:
                return LOCKED, None

    def _read_request(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(256)
            if not chunk:
                break
            data += chunk
            if len(data) > _MAX_REQUEST:
                return None, None, None, 413
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None, None, None, 400
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > _MAX_BODY:
            return None, None, None, 413
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                break
            body += chunk
        return parts[0], parts[1], body[:length].decode(), None

    def _reply(self, conn, status, body=b"", extra=""):
        conn.sendall(("HTTP/1.0 %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                   "Content-Length: %d\r\nCache-Control: no-store\r\n"
                   "X-Frame-Options: DENY\r\nConnection: close\r\n%s\r\n"
                   % (status, len(body), extra)).encode())
        if body:
            conn.sendall(body)

    def _handle(self, conn):
        self.requests += 1
        method, path, body, error = self._read_request(conn)
        if error == 413:
            self._reply(conn, "413 Payload Too Large")
            return None
        if error is not None:
            self._reply(conn, "400 Bad Request")
            return None
        if method == "GET":
            if path == "/":
                self._reply(conn, "200 OK", _FORM)
            else:  # captive-portal probes land on the form, nothing else is served
                self._reply(conn, "302 Found", extra="Location: /\r\n")
            return None
        if method != "POST":
            self._reply(conn, "405 Method Not Allowed", extra="Allow: GET, POST\r\n")
            return None
        if path != "/":
            self._reply(conn, "404 Not Found")
            return None
        fields = parse_form(body)
        code = normalize_code(fields.get("code", ""))
        if code is None or not same(code, self._secret):
            self.failures += 1
            self._note("setup: wrong code (%d)" % self.failures)
            self._reply(conn, "403 Forbidden", b"Wrong setup code.\n")
            return None
        ssid = fields.get("ssid", "")
        password = fields.get("password", "")
        if not 0 < len(ssid.encode()) <= _MAX_SSID or len(password.encode()) > _MAX_PASSWORD \
                or 0 < len(password) < 8:
            self._reply(conn, "400 Bad Request", b"Wi-Fi name or password invalid.\n")
            return None
        self._save(ssid, password)
        self._reply(conn, "200 OK", b"Saved. The device restarts and joins your Wi-Fi.\n")
        return ssid
