"""Outbound calls: the address policy, one call's bounds (connect to the checked
address, no redirects, a total deadline), and the circuit breaker. Real HTTP servers
on loopback; the only stand-in is the resolver (getaddrinfo, a library boundary) where
a name must resolve differently from one call to the next."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.errors import ConfigError
from backend.orders.outbound import (
    AddressPolicy,
    AddressRefused,
    Dispatcher,
    Job,
    Limits,
    Outbound,
    OutboundError,
    Timeouts,
)

TIMEOUTS = Timeouts(connect_s=2.0, total_s=1.0)


@pytest.mark.parametrize("url, what", [
    ("http://127.0.0.1:8000/x", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://[::1]:8000/", "loopback"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number
    ("http://0x7f.1/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 around 127.0.0.1
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("http://[fe80::1]/", "link-local"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fd00::1]/", "private"),
    ("http://100.64.0.1/", "not globally reachable"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://0.0.0.0/", "unspecified"),
])
def test_non_public_addresses_are_refused(url, what):
    with pytest.raises(AddressRefused, match=what) as refused:
        AddressPolicy().check(url, "webhook_url")
    assert "REPLENISH_WEBHOOK_ALLOW_NETWORKS" in str(refused.value)


@pytest.mark.parametrize("url, why", [
    ("ftp://example.org/", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("http://user:secret@8.8.8.8/", "user name or password"),
    ("http:///nohost", "no host"),
    ("http://8.8.8.8:99999/", "not a valid URL"),
    ("http://name.invalid/", "does not resolve"),
])
def test_malformed_urls_are_refused_clearly(url, why):
    with pytest.raises(AddressRefused, match=why) as refused:
        AddressPolicy().check(url)
    assert "secret" not in str(refused.value)


def test_public_addresses_pass_and_the_allow_list_opens_a_network():
    public = AddressPolicy().check("https://8.8.8.8/hook?x=1")
    assert (public.addresses, public.port, public.path) == (("8.8.8.8",), 443, "/hook?x=1")
    allowed = AddressPolicy(["127.0.0.0/8"]).check("http://127.0.0.1:9/x")
    assert allowed.addresses == ("127.0.0.1",)
    with pytest.raises(AddressRefused, match="loopback"):
        AddressPolicy(["127.0.0.0/8"]).check("http://[::1]:9/x")  # IPv6 is not allowed
    with pytest.raises(ConfigError, match="REPLENISH_WEBHOOK_ALLOW_NETWORKS"):
        AddressPolicy(["127.0.0.0/33"])


def test_a_name_with_one_refused_address_is_refused():
    def resolve(host, port, type):
        return [(socket.AF_INET, type, 6, "", (address, port))
                for address in ("8.8.8.8", "10.0.0.1")]

    with pytest.raises(AddressRefused, match="10.0.0.1"):
        AddressPolicy(resolve=resolve).check("http://mixed.example/")


class _Server:
    """A loopback HTTP server whose answer the test sets; records what it got."""

    def __init__(self, host="127.0.0.1", status=200, headers=(), port=0):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                got.append((self.path, self.headers["Host"],
                            self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_connection_goes_to_the_address_checked_not_a_rebound_one():
    """The name resolves to an allowed address when checked and to a refused one
    afterwards (DNS rebinding): the call still goes to the address checked."""
    allowed = _Server("127.0.0.2")
    # The same port on both: only the address decides where the call lands.
    forbidden = _Server("127.0.0.1", port=allowed.port)
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])
    calls = []

    def rebinding(host, port, type):
        calls.append(host)
        return [(socket.AF_INET, type, 6, "", (next(answers), port))]

    try:
        outbound = Outbound(AddressPolicy(["127.0.0.2/32"], resolve=rebinding), TIMEOUTS)
        url = f"http://rebind.example:{allowed.port}/hook"
        answer = outbound.post(url, b"{}", {})
    finally:
        allowed.close()
        forbidden.close()
    assert answer.status == 200 and calls == ["rebind.example"], "resolved once"
    assert allowed.got == [("/hook", f"rebind.example:{allowed.port}", b"{}")]
    assert forbidden.got == []


def test_redirects_are_answers_not_followed():
    target = _Server()
    redirecting = _Server(status=307, headers=[
        ("Location", f"http://127.0.0.1:{target.port}/internal")])
    try:
        outbound = Outbound(AddressPolicy(["127.0.0.0/8"]), TIMEOUTS)
        answer = outbound.post(f"http://127.0.0.1:{redirecting.port}/hook", b"{}", {})
    finally:
        redirecting.close()
        target.close()
    assert (answer.status, answer.redirect) == (307, True)
    assert len(redirecting.got) == 1 and target.got == []


class _Trickle:
    """Accepts, then sends an HTTP status line a byte at a time, forever (until the
    caller hangs up): each byte arrives well within any per-read timeout."""

    def __init__(self, pause_s=0.05):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.hung_up = threading.Event()
        self._pause_s = pause_s
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.listener.accept()
        conn.recv(65536)
        try:
            for byte in iter(lambda: b"X", None):
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: " if not self.sent else byte)
                self.sent += 1
                time.sleep(self._pause_s)
        except OSError:
            self.hung_up.set()
        finally:
            conn.close()
            self.listener.close()


def test_a_trickling_server_is_cut_off_at_the_total_deadline():
    trickle = _Trickle()
    outbound = Outbound(AddressPolicy(["127.0.0.0/8"]),
                        Timeouts(connect_s=2.0, total_s=0.5))
    with pytest.raises(OutboundError, match="no answer within 0.5 s"):
        outbound.post(f"http://127.0.0.1:{trickle.port}/", b"{}", {})
    assert trickle.hung_up.wait(30), "the server saw the caller hang up"
    # Each byte came 0.05 s after the last: per-read timeouts alone never fire.
    assert 1 < trickle.sent < 200


def test_a_call_refused_at_send_time_never_connects():
    server = _Server()
    try:
        with pytest.raises(AddressRefused, match="loopback"):
            Outbound(AddressPolicy(), TIMEOUTS).post(
                f"http://127.0.0.1:{server.port}/", b"{}", {})
    finally:
        server.close()
    assert server.got == []


# -- the lanes and the breaker -----------------------------------------------------------

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _limits(**changes):
    values = dict(threads=8, per_destination=2, per_household=1, breaker_failures=3,
                  breaker_open_s=30.0, busy_wait_s=1.0)
    return Limits(**{**values, **changes})


def test_limits_per_destination_and_per_household():
    lane = Dispatcher("test", _limits())
    release = threading.Event()

    def hold():
        release.wait(30)
        return True

    try:
        assert lane.try_start(Job("http://a:80", 1, hold)) is None
        assert lane.try_start(Job("http://a:80", 1, hold)) == 1.0, "household 1 is full"
        assert lane.try_start(Job("http://a:80", 2, hold)) is None
        assert lane.try_start(Job("http://a:80", 3, hold)) == 1.0, "destination a is full"
        assert lane.try_start(Job("http://b:80", 3, hold)) is None
        assert lane.in_flight() == {"http://a:80": 2, "http://b:80": 1}
    finally:
        release.set()
    assert lane.wait_idle(30) and lane.in_flight() == {}


def test_the_breaker_opens_after_failures_and_lets_one_trial_through():
    clock = _Clock()
    done = threading.Semaphore(0)
    outcome = {"healthy": False}

    def call():
        return outcome["healthy"]

    lane = Dispatcher("test", _limits(per_household=8), on_done=done.release, clock=clock)

    def run_one():
        wait = lane.try_start(Job("http://down:80", None, call))
        if wait is None:
            assert done.acquire(timeout=30)
            assert lane.wait_idle(30)
        return wait

    assert [run_one() for _ in range(3)] == [None, None, None]
    assert lane.breaker("http://down:80").state == "open"
    assert run_one() == 30.0, "open: nothing goes through"
    assert lane.try_start(Job("http://up:80", None, lambda: True)) is None, \
        "other destinations are not affected"
    clock.now += 10
    assert run_one() == 20.0
    clock.now += 20
    assert run_one() is None, "half-open: one trial"
    assert lane.breaker("http://down:80").state == "open", "the trial failed: open again"
    assert run_one() == 30.0
    clock.now += 30
    outcome["healthy"] = True
    assert run_one() is None and lane.breaker("http://down:80").state == "closed"
    assert [run_one() for _ in range(3)] == [None, None, None]


# -- HTTPS: the name is checked in the certificate, the address is the one checked -------

def _certificate(tmp_path, name: str):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("served_name, ok", [("shop.example", True),
                                             ("other.example", False)])
def test_https_checks_the_certificate_against_the_name(tmp_path, served_name, ok):
    import ssl

    cert, key = _certificate(tmp_path, served_name)
    server = _Server()
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    server.server.socket = served.wrap_socket(server.server.socket, server_side=True)
    trusted = ssl.create_default_context(cafile=str(cert))

    def resolve(host, port, type):
        return [(socket.AF_INET, type, 6, "", ("127.0.0.1", port))]

    outbound = Outbound(AddressPolicy(["127.0.0.0/8"], resolve=resolve), TIMEOUTS, trusted)
    try:
        url = f"https://shop.example:{server.port}/orders"
        if ok:
            assert outbound.post(url, b"{}", {}).status == 200
            assert server.got == [("/orders", f"shop.example:{server.port}", b"{}")]
        else:
            with pytest.raises(OutboundError, match="CERTIFICATE_VERIFY_FAILED|hostname"):
                outbound.post(url, b"{}", {})
            assert server.got == []
    finally:
        server.close()
