"""Secrets never reach the logs: every log line of a full scenario, in this process
(caplog at DEBUG) and in a backend subprocess (its log file, at DEBUG), is searched
for every secret the scenario handled, in every form Python can log it: hex in either
case, base64 (standard and URL-safe), the raw text, `repr()` (b'\\x8f...' or '...'),
and any part of those of at least 8 bytes (a `%.40r`, a `key[:8].hex()`).

Secrets: device keys, the KEK, API tokens, account passwords, claim codes (as printed
and normalized), device setup secrets, the merchant's and a household webhook's
signing secrets, the web session key, the manufacturer's release signing key, the
firmware fetch token (/fw's t=) and the database password (PostgreSQL run: the
database URL carries one).
"""

import base64
import json
import logging
import os
import secrets
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.engine import make_url

from backend import protocol
from backend.coap.firmware import fetch_token
from backend.config import Settings, SimulatorSettings
from backend.protocol import Kind, WireEvent
from backend.storage.models import Order
from devtools.bench.fleet import provision_fleet
from devtools.bench.loadgen import Workload
from devtools.faults.backend_proc import ROOT, BackendProcess
from devtools.faults.crash import hold_window_zero
from devtools.merchant_server import FakeMerchant
from devtools.net import api, coap_get, coap_post_all
from provisioning import releases
from provisioning.batch import provision_batch
from tests import migrated
from tests.conftest import BackendThread
from tests.devtools.test_bench_loadgen import drive
from tests.worker_helpers import until

PART_BYTES = 8  # a log line showing this many bytes of a secret leaks it
PART_CHARS = 12  # ... or this many characters of a textual secret or of its base64


def _windows(text: str, size: int) -> set[str]:
    if len(text) <= size:
        return {text}
    return {text[i:i + size] for i in range(len(text) - size + 1)}


def forms(secret) -> set[str]:
    """Every way a secret (or a part of it) could show up in a log line."""
    raw = secret if isinstance(secret, bytes) else secret.encode()
    out = set()
    for i in range(max(1, len(raw) - PART_BYTES + 1)):  # every 8-byte part, and the whole
        for part in (raw[i:i + PART_BYTES], raw):
            out |= {part.hex(), part.hex().upper(), repr(part)[2:-1]}
    for encoded in (base64.b64encode(raw).decode(),
                    base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        out |= _windows(encoded, PART_CHARS)
    if not isinstance(secret, bytes):
        out |= _windows(secret, PART_CHARS) | {secret.replace("-", ""), repr(secret)}
    return {form for form in out if len(form) >= 8}


def leaks(text: str, named: dict) -> list[str]:
    return sorted({f"{name} ({form[:6]}...)" for name, secret in named.items()
                   for form in forms(secret) if form in text})


def test_the_search_finds_every_form():
    """The search itself: each way a careless line could print a key is found."""
    key = bytes(range(0x80, 0xa0))
    for line in (f"{key!r}", f"{key.hex()}", f"{key.hex().upper()}", f"{key[5:13]!r}",
                 f"{key[3:11].hex()}", "%.40r" % key, "%s" % key,
                 base64.b64encode(key).decode()[:12], repr((key,))):
        assert leaks(f"INFO x: {line} y", {"key": key}), line
    assert leaks("pw is hunter2-and-more!", {"password": "hunter2-and-more!"})
    assert leaks("pw 'hunter2-and'", {"password": "hunter2-and-more!"})
    assert not leaks("nothing to see here at all", {"key": key, "pw": "hunter2-and-more!"})


def log_text(records) -> str:
    lines = []
    for record in records:
        lines.append(record.getMessage())
        lines.append(repr(record.args))
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines)


@pytest.fixture
def secret_settings(db_url, tmp_path) -> tuple[Settings, str | None]:
    """Settings whose database URL carries a password on PostgreSQL (a role made for
    the test, with a random password); (settings, that password or None)."""
    password = None
    if db_url.startswith("postgresql"):
        import psycopg

        password = "pg-" + secrets.token_hex(12)
        role = f"r{secrets.token_hex(4)}"
        admin = make_url(db_url).set(drivername="postgresql")
        with psycopg.connect(admin.render_as_string(hide_password=False),
                             autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
        db_url = make_url(db_url).set(username=role, password=password).render_as_string(
            hide_password=False)
    migrated.migrate(db_url)
    return Settings(data_dir=tmp_path, database_url=db_url, coap_host="127.0.0.1",
                    coap_port=0, http_host="127.0.0.1", http_port=0,
                    kek_hex=secrets.token_hex(32),
                    simulator=SimulatorSettings(step_s=0.2, poll_s=0.05)), password


def test_no_secret_in_any_log_line_of_a_full_scenario(secret_settings, tmp_path, caplog):
    settings, db_password = secret_settings
    caplog.set_level(logging.DEBUG)
    merchant_secret, web_key = secrets.token_hex(16), secrets.token_hex(32)
    password, hook_secret = "pw-" + secrets.token_hex(8), "hook-" + secrets.token_hex(12)
    release_key = Ed25519PrivateKey.generate()
    with FakeMerchant(merchant_secret) as merchant, BackendThread(settings.with_(
            merchant_url=merchant.url, merchant_secret=merchant_secret,
            web_secret_key=web_key, webhook_allow_networks=("127.0.0.0/8",))) as backend:
        with backend.writer_sessions() as session, session.begin():
            made = provision_batch(session, backend.keyring, model="button", count=2,
                                   out=tmp_path / "bundles", coap_host="127.0.0.1",
                                   coap_port=backend.coap_port, name="secrets",
                                   release_key=releases.public_key_hex(release_key))
        base = f"http://127.0.0.1:{backend.http_port}/api/v1"
        status, body = api("POST", f"{base}/accounts", body={
            "email": "someone@example.org", "password": password, "household_name": "Flat"})
        assert status == 201
        token = body["token"]
        assert api("POST", f"{base}/tokens", body={"email": "someone@example.org",
                                                   "password": password + "x"})[0] == 401
        status, body = api("POST", f"{base}/tokens", body={"email": "someone@example.org",
                                                           "password": password})
        second_token = body["token"]
        assert api("PATCH", f"{base}/household", token, {
            "hold_window_s": 0, "webhook_url": merchant.url + "/hook",
            "webhook_secret": hook_secret})[0] == 200
        device = made[0]
        wrong = made[1].claim_code[:-1] + ("1" if made[1].claim_code[-1] == "0" else "0")
        assert api("POST", f"{base}/devices/claim", token, {"code": wrong})[0] in (400, 404)
        assert api("POST", f"{base}/devices/claim", token, {"code": device.claim_code})[0] == 201
        assert api("PUT", f"{base}/devices/{device.device_id}/slots/0", token,
                   {"product_sku": "DETERGENT-1L", "quantity": 1})[0] == 200
        identity = json.loads((device.bundle_dir / "identity.json").read_text())
        key, kid = bytes.fromhex(identity["key"]), bytes.fromhex(identity["device_id"])
        press = protocol.encode_event(key, kid, WireEvent(seq=1, kind=Kind.PRESS, slot=0))
        forged = protocol.encode_event(secrets.token_bytes(32), kid,
                                       WireEvent(seq=2, kind=Kind.PRESS, slot=0))
        url = f"coap://127.0.0.1:{backend.coap_port}/ev"
        coap_post_all(url, [press, press, forged])
        until(backend, lambda s: s.scalar(select(Order.state)) == "placed")
        # A release signed with the manufacturer's key, fetched with the device's token
        # (and once with a wrong one: a careless refusal would log the expected token).
        module = b"M\x06" + secrets.token_bytes(64)
        with backend.writer_sessions() as session, session.begin():
            release_id = releases.publish(session, release_key, model="button",
                                          version="0.2.0", build=2,
                                          files={"replenish/x.mpy": module}).id
        token_fw = fetch_token(key, release_id)
        fw = f"coap://127.0.0.1:{backend.coap_port}/fw/{release_id}/replenish/x.mpy"
        got = coap_get(f"{fw}?d={kid.hex()}&t={token_fw}")
        assert got.code.is_successful() and got.payload == module, got
        refused = coap_get(f"{fw}?d={kid.hex()}&t={'0' * 32}")
        assert not refused.code.is_successful()
        named = {"device key": key, "KEK": bytes.fromhex(settings.kek_hex),
                 "API token": token, "second API token": second_token, "password": password,
                 "merchant secret": merchant_secret, "webhook secret": hook_secret,
                 "web session key": web_key, "fetch token": token_fw,
                 "release key": release_key.private_bytes(
                     serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                     serialization.NoEncryption()),
                 "release key (PKCS8)": release_key.private_bytes(
                     serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                     serialization.NoEncryption())}
        if db_password:
            named["database password"] = db_password
        for n, made_device in enumerate(made):
            named[f"claim code {n}"] = made_device.claim_code
            named[f"setup secret {n}"] = made_device.setup_secret
            named[f"key {n}"] = bytes.fromhex(json.loads(
                (made_device.bundle_dir / "identity.json").read_text())["key"])
    text = log_text(caplog.records)
    assert len(caplog.records) > 20  # the scenario did log: the search means something
    # the search covers the ingest writer's lines (forwarded from its process) and /fw's
    assert any(record.processName == "ingest-writer" for record in caplog.records)
    assert "/fw/" in text
    assert leaks(text, named) == []


def test_no_secret_in_a_backend_subprocess_log(tmp_path):
    kek, merchant_secret = secrets.token_bytes(32), secrets.token_hex(16)
    db_url = f"sqlite:///{tmp_path / 'replenish.db'}"
    fleet = provision_fleet(db_url, kek, 8, name="secrets")
    hold_window_zero(db_url)  # orders go to the merchant, signed with its secret
    with FakeMerchant(merchant_secret) as merchant:
        env = {**os.environ, "DATABASE_URL": db_url, "REPLENISH_KEK": kek.hex(),
               "REPLENISH_DATA_DIR": str(tmp_path), "REPLENISH_COAP_HOST": "127.0.0.1",
               "REPLENISH_MERCHANT_URL": merchant.url,
               "REPLENISH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
               "REPLENISH_MERCHANT_SECRET": merchant_secret, "PYTHONPATH": str(ROOT)}
        backend = BackendProcess(env, tmp_path / "backend.log", verbose=True)
        backend.start()
        try:
            workload = Workload(fleet)
            workload.prepare(24)
            drive(backend.port, workload, [dict(duration_s=30, window=8, drain_s=30)])
            for _ in range(200):  # bounded: until the merchant got the orders
                if len(merchant.orders) >= len(fleet):
                    break
                time.sleep(0.05)
            assert len(merchant.orders) == len(fleet)
        finally:
            assert backend.stop() == 0
    text = (tmp_path / "backend.log").read_text()
    assert "DEBUG" in text and "committed" in text  # it logged, at DEBUG
    named = {"KEK": kek, "merchant secret": merchant_secret}
    named.update({f"device key {n}": device.key for n, device in enumerate(fleet)})
    assert leaks(text, named) == []
