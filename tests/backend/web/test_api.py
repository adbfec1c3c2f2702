"""JSON API v1 against the running backend: auth, a household's view, isolation."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from backend import protocol
from backend.accounts import households
from backend.protocol import Kind, Result, WireEvent
from devtools.net import coap_post

HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def http(url: str, token: str | None = None, scheme: str = "Bearer"):
    """GET `url`; (status, parsed JSON body, raw body)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, ctype = response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        with err:
            status, raw, ctype = err.code, err.read(), err.headers
    assert ctype.get_content_type() == "application/json", (status, raw)
    return status, json.loads(raw), raw.decode()


def secrets_of(world) -> list[str]:
    """Every device key (hex) and claim code of the world's batch."""
    found = []
    for device in [*world.buttons, world.unclaimed]:
        identity = json.loads((device.bundle_dir / "identity.json").read_text())
        found += [identity["key"], device.claim_code, device.claim_code.replace("-", "")]
    return found


def assert_no_secrets(world, raw: str) -> None:
    assert not HEX_KEY.search(raw), raw
    for secret in secrets_of(world):
        assert secret.lower() not in raw.lower()


def assert_error(status, body, expected_status, code):
    assert status == expected_status
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]


def press(world, device, seq):
    identity = json.loads((device.bundle_dir / "identity.json").read_text())
    key, kid = bytes.fromhex(identity["key"]), bytes.fromhex(identity["device_id"])
    request = protocol.encode_event(key, kid, WireEvent(seq=seq, kind=Kind.PRESS, slot=0))
    response = coap_post(world.event_url, request)
    return protocol.decode_answer(key, protocol.parse_signed_event(request).tag,
                                  response.payload)


@pytest.fixture
def stranger(backend):
    """A second household with its own token and nothing else."""
    with backend.sessions() as session, session.begin():
        household, token = households.create(session, "Strangers")
    return household.id, token


def test_devices_lists_the_households_claimed_devices_with_slots(world):
    status, body, raw = http(f"{world.api_url}/devices", world.token)
    assert status == 200
    listed = {d["device_id"]: d for d in body["devices"]}
    assert set(listed) == {b.device_id for b in world.buttons}
    for device in world.buttons:
        entry = listed[device.device_id]
        assert entry["serial"] == device.serial and entry["status"] == "active"
        assert entry["slots"] == [{"slot": 0, "product_sku": "DETERGENT-1L", "quantity": 2,
                                   "kind": "button", "safety_days": 2.0,
                                   "confirmed_price_minor": 899, "confirmed_currency": "EUR",
                                   "min_level": None, "target_level": None}]
        assert not any("key" in field or "claim" in field for field in entry)
    assert_no_secrets(world, raw)

    status, one, raw = http(f"{world.api_url}/devices/{world.buttons[1].device_id}",
                            world.token)
    assert status == 200 and one == listed[world.buttons[1].device_id]
    assert_no_secrets(world, raw)


@pytest.mark.parametrize("token, scheme", [
    (None, "Bearer"),
    ("rp_not-a-real-token", "Bearer"),
    ("", "Bearer"),
    ("WORLD", "Basic"),
])
def test_missing_or_bad_token_is_401(world, token, scheme):
    token = world.token if token == "WORLD" else token
    for path in ("/devices", "/orders", f"/devices/{world.buttons[0].device_id}",
                 "/orders/1"):
        status, body, raw = http(world.api_url + path, token, scheme)
        assert_error(status, body, 401, "Unauthorized")
        assert world.buttons[0].device_id not in raw


def test_a_press_shows_up_as_an_order_with_its_history(world, backend):
    button = world.buttons[0]
    answer = press(world, button, 1)
    assert answer.result is Result.CREATED
    backend.order_worker.run_once()  # may or may not step it on: history covers both
    status, body, raw = http(f"{world.api_url}/orders", world.token)
    assert status == 200
    assert [o["id"] for o in body["orders"]] == [answer.order]
    order = body["orders"][0]
    assert (order["device_id"], order["slot"], order["product_sku"], order["quantity"]) == (
        button.device_id, 0, "DETERGENT-1L", 2)
    history = order["history"]
    assert history[0]["from"] is None and history[0]["to"] == "pending"
    assert all(h["actor"] and h["at"].endswith("Z") for h in history)
    assert [h["to"] for h in history] == (
        ["pending", "confirmed", "placed", "shipped", "delivered"][:len(history)])
    assert order["state"] == history[-1]["to"]
    assert_no_secrets(world, raw)

    status, one, _ = http(f"{world.api_url}/orders/{answer.order}", world.token)
    assert status == 200 and one["id"] == answer.order
    assert one["history"][:len(history)] == history


def test_households_cannot_see_each_others_devices_or_orders(world, stranger):
    order_id = press(world, world.buttons[0], 1).order
    _, token = stranger
    for path in (f"/devices/{world.buttons[0].device_id}", f"/orders/{order_id}",
                 f"/devices/{world.unclaimed.device_id}"):
        status, body, raw = http(world.api_url + path, token)
        assert_error(status, body, 404, "NotFound")
        assert "DETERGENT" not in raw
    empty = {"next_cursor": None, "next": None}
    assert http(f"{world.api_url}/devices", token)[:2] == (200, {"devices": [], **empty})
    assert http(f"{world.api_url}/orders", token)[:2] == (200, {"orders": [], **empty})
    # and the owner still sees both
    assert http(f"{world.api_url}/orders/{order_id}", world.token)[0] == 200


def test_unclaimed_device_is_not_found_even_for_its_future_owner(world):
    status, body, _ = http(f"{world.api_url}/devices/{world.unclaimed.device_id}",
                           world.token)
    assert_error(status, body, 404, "NotFound")


def test_unknown_paths_and_methods_are_json_errors(world):
    base = world.api_url.removesuffix("/api/v1")
    for url in (f"{base}/nope", f"{world.api_url}/nope", f"{world.api_url}/orders/abc"):
        status, body, _ = http(url, world.token)
        assert_error(status, body, 404, "NotFound")
    request = urllib.request.Request(f"{world.api_url}/devices", method="DELETE",
                                     headers={"Authorization": f"Bearer {world.token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    with refused.value as err:
        assert err.code == 405
        assert json.loads(err.read())["error"]["code"] == "MethodNotAllowed"


def test_healthz(world):
    base = world.api_url.removesuffix("/api/v1")
    assert http(f"{base}/healthz")[:2] == (200, {"status": "ok"})
