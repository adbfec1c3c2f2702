"""JSON API v1 in-process on the real app and databases: accounts and tokens, lockouts,
claiming, pagination, error bodies, device state, notifications, the operator's fleet."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from backend.accounts import users as accounts
from backend.storage.db import make_engine, make_sessionmaker, utcnow
from backend.storage.models import AuthThrottle, Device
from backend.web import create_app
from tests import api_world
from tests.api_world import PASSWORD


@pytest.fixture
def world(db_url, tmp_path) -> api_world.ApiWorld:
    return api_world.build(tmp_path, db_url)


def call(world, method, path, token=None, body=None, **kwargs):
    headers = world.headers(token) if token else {}
    answer = world.app.test_client().open(f"/api/v1{path}", method=method, json=body,
                                          headers=headers, **kwargs)
    if answer.status_code != 204:
        assert answer.mimetype == "application/json", answer.data
    return answer


def assert_error(answer, status: int, code: str, words: str = "") -> None:
    body = answer.get_json()
    assert answer.status_code == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and words in body["error"]["message"]


def test_register_log_in_log_out(world, caplog):
    caplog.set_level(logging.DEBUG)
    answer = call(world, "POST", "/accounts", body={
        "email": "New@Example.org", "password": PASSWORD, "household_name": "New flat"})
    assert answer.status_code == 201
    registered = answer.get_json()
    assert registered["user"]["email"] == "new@example.org"
    assert registered["household"]["name"] == "New flat"
    token = registered["token"]
    me = call(world, "GET", "/tokens/current", token).get_json()
    assert me["role"] == "household" and me["household_id"] == registered["household"]["id"]

    assert_error(call(world, "POST", "/accounts", body={
        "email": "new@example.org", "password": PASSWORD, "household_name": "Again"}),
        409, "Conflict", "exists already")
    assert_error(call(world, "POST", "/accounts", body={
        "email": "x@example.org", "password": "short", "household_name": "Y"}),
        400, "BadRequest", "password")

    logged_in = call(world, "POST", "/tokens",
                     body={"email": "new@example.org", "password": PASSWORD})
    assert logged_in.status_code == 201 and logged_in.get_json()["token"] != token
    assert call(world, "DELETE", "/tokens/current", token).status_code == 204
    assert_error(call(world, "GET", "/devices", token), 401, "Unauthorized")
    assert call(world, "GET", "/devices", logged_in.get_json()["token"]).status_code == 200
    assert PASSWORD not in caplog.text and token not in caplog.text


def test_log_in_is_locked_after_repeated_failures(world, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(accounts.MAX_FAILURES):
        assert_error(call(world, "POST", "/tokens", body={
            "email": world.owner.email, "password": "not the password"}),
            401, "Unauthorized", "wrong email or password")
    locked = call(world, "POST", "/tokens",
                  body={"email": world.owner.email, "password": "not the password"})
    assert_error(locked, 429, "Locked", "try again")
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    # Locked means locked: the right password is refused too, until the time is up.
    assert_error(call(world, "POST", "/tokens", body={
        "email": world.owner.email, "password": PASSWORD}), 429, "Locked")
    assert "not the password" not in caplog.text and PASSWORD not in caplog.text


def test_claim_by_code_with_lockout(world, caplog):
    caplog.set_level(logging.DEBUG)
    token = world.stranger.token
    wrong = "0000-0000-0000-0"
    for _ in range(accounts.MAX_FAILURES):
        assert call(world, "POST", "/devices/claim", token, {"code": wrong}).status_code in (
            400, 404)
    assert_error(call(world, "POST", "/devices/claim", token, {"code": wrong}), 429, "Locked")
    assert_error(call(world, "POST", "/devices/claim", token,
                      {"code": world.unclaimed_code}), 429, "Locked")
    with world.sessions() as session:
        assert session.get(Device, session.scalar(select(Device.id).where(
            Device.device_id == world.unclaimed_device_id))).household_id is None

    # Another household is not locked: it claims with the URL of the label's QR code.
    code = world.unclaimed_code
    claimed = call(world, "POST", "/devices/claim", world.other.token,
                   {"code": f"http://127.0.0.1:8000/claim/{code}"})
    assert claimed.status_code == 201, claimed.get_json()
    assert claimed.get_json()["device_id"] == world.unclaimed_device_id
    assert world.unclaimed_code not in claimed.get_data(as_text=True)
    assert world.unclaimed_code not in caplog.text and code not in caplog.text
    with world.sessions() as session:
        assert session.get(AuthThrottle, f"claim:{world.other.household_id}") is None


def test_every_list_paginates_with_a_cursor(world):
    token = world.owner.token
    seen, path = [], "/orders?limit=1"
    while path:
        body = call(world, "GET", path.removeprefix("/api/v1"), token).get_json()
        assert len(body["orders"]) <= 1
        seen += [o["id"] for o in body["orders"]]
        assert (body["next"] is None) == (body["next_cursor"] is None)
        path = body["next"]
    assert seen == sorted(world.owner.order_ids, reverse=True)
    products = call(world, "GET", "/products?limit=1", token).get_json()
    second = call(world, "GET", f"/products?limit=1&cursor={products['next_cursor']}",
                  token).get_json()
    assert second["products"][0]["sku"] > products["products"][0]["sku"]
    for query in ("limit=0", "limit=101", "limit=abc", "limit=", "cursor=xyz", "cursor=-1"):
        assert_error(call(world, "GET", f"/orders?{query}", token), 400, "BadRequest")
    assert_error(call(world, "GET", "/orders?state=lost", token), 400, "BadRequest", "state")


BAD_SLOT_BODIES = [
    ({"product_sku": "DETERGENT-1L", "quantity": "2"}, "quantity must be an integer"),
    ({"product_sku": "DETERGENT-1L", "quantity": True}, "quantity must be an integer"),
    ({"product_sku": "DETERGENT-1L", "quantity": 0}, "quantity must be at least 1"),
    ({"product_sku": "DETERGENT-1L", "kind": "toaster"}, "kind must be one of"),
    ({"product_sku": "DETERGENT-1L", "safety_days": 61}, "safety_days must be at most 60"),
    ({"product_sku": "DETERGENT-1L", "colour": "red"}, "unknown field 'colour'"),
    ({"quantity": 2}, "product_sku is required"),
    ({"product_sku": "A\x00B"}, "control characters"),
    ({"product_sku": "x" * 101}, "at most 100 characters"),
]


def test_bad_bodies_are_400_in_words_and_change_nothing(world):
    path = f"/devices/{world.owner.device_ids[0]}/slots/0"
    before = call(world, "GET", f"/devices/{world.owner.device_ids[0]}",
                  world.owner.token).get_json()
    for body, words in BAD_SLOT_BODIES:
        assert_error(call(world, "PUT", path, world.owner.token, body), 400, "BadRequest",
                     words)
    after = call(world, "GET", f"/devices/{world.owner.device_ids[0]}",
                 world.owner.token).get_json()
    assert after == before


def test_bodies_that_are_not_json_objects(world):
    path, token = "/household", world.owner.token
    client = world.app.test_client()
    headers = world.headers(token)
    assert_error(client.patch(f"/api/v1{path}", data="hold=0", headers=headers,
                              content_type="text/plain"), 415, "UnsupportedMediaType")
    deep = "[" * 100_000 + "]" * 100_000  # json.loads gives up with a RecursionError
    for raw in ("[1, 2]", "{not json", "null", '"text"', '{"hold_window_s": NaN}', deep):
        answer = client.patch(f"/api/v1{path}", data=raw, headers=headers,
                              content_type="application/json")
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "BadRequest"
    assert_error(call(world, "PATCH", path, token, {"webhook_url": "ftp://x"}), 400,
                 "BadRequest", "http")
    huge = client.patch(f"/api/v1{path}", data='{"webhook_url": "' + "x" * 2**21 + '"}',
                        headers=headers, content_type="application/json")
    assert_error(huge, 413, "RequestEntityTooLarge")


def test_unknown_paths_wrong_methods_and_a_broken_database_are_json_errors(world, tmp_path):
    assert_error(call(world, "GET", "/nope", world.owner.token), 404, "NotFound")
    assert_error(call(world, "GET", "/orders/0", world.owner.token), 404, "NotFound")
    assert_error(call(world, "GET", f"/orders/{2**40}", world.owner.token), 404, "NotFound")
    assert_error(call(world, "GET", "/devices/ZZ", world.owner.token), 404, "NotFound")
    assert_error(call(world, "DELETE", "/orders", world.owner.token), 405, "MethodNotAllowed")
    assert_error(call(world, "GET", "/operator/devices", world.owner.token), 403, "Forbidden")
    # A database that cannot be opened: 500 in the same shape, with nothing of the cause.
    broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    app = create_app(make_sessionmaker(broken), make_sessionmaker(broken, writer=True),
                     world.settings)
    answer = app.test_client().get("/api/v1/devices", headers=world.headers("rp_x"))
    assert answer.status_code == 500
    assert answer.get_json()["error"]["code"] == "InternalError"
    assert "sqlite" not in answer.get_data(as_text=True).lower()
    broken.dispose()


def test_device_state_flags_and_level_history(world):
    device_id = world.owner.device_ids[0]
    with world.sessions() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        device.last_seen_at = utcnow() - timedelta(seconds=world.settings.offline_after_s + 60)
        device.battery_mv = world.settings.low_battery_mv - 1
    state = call(world, "GET", f"/devices/{device_id}", world.owner.token).get_json()
    assert state["offline"] is True and state["low_battery"] is True
    assert state["fw_version"] == "1.0.0" and state["last_seen_at"].endswith("Z")

    levels = call(world, "GET", f"/devices/{device_id}/slots/1/levels?limit=3",
                  world.owner.token).get_json()
    assert [r["remaining"] for r in levels["readings"]] == [620, 660, 700]  # newest first
    rest = call(world, "GET", f"/devices/{device_id}/slots/1/levels?limit=10&cursor="
                f"{levels['next_cursor']}", world.owner.token).get_json()
    assert [r["remaining"] for r in rest["readings"]] == [740, 780, 820, 860, 900]
    forecast = call(world, "GET", f"/devices/{device_id}/slots/1/forecast",
                    world.owner.token).get_json()
    assert forecast["readings_used"] == 8 and forecast["product_sku"] == "COFFEE-BEANS-1KG"
    assert_error(call(world, "GET", f"/devices/{device_id}/slots/5/levels",
                      world.owner.token), 404, "NotFound", "not configured")


def test_notifications_read_one_and_all(world):
    token, note_id = world.owner.token, world.owner.notification_ids[0]
    unread = call(world, "GET", "/notifications?unread=true", token).get_json()
    assert note_id in [n["id"] for n in unread["notifications"]]
    read = call(world, "POST", f"/notifications/{note_id}/read", token).get_json()
    assert read["read"] is True and read["read_at"].endswith("Z")
    assert read["device_id"] == world.owner.device_ids[0]
    unread = call(world, "GET", "/notifications?unread=true", token).get_json()
    assert note_id not in [n["id"] for n in unread["notifications"]]
    marked = call(world, "POST", "/notifications/read-all", token).get_json()["marked"]
    assert marked == len(unread["notifications"]) > 0
    assert call(world, "GET", "/notifications?unread=true", token).get_json()[
        "notifications"] == []


def test_operator_fleet_filters_batches_and_revoke(world):
    token = world.operator_token
    owner_device, other_device = world.owner.device_ids[0], world.other.device_ids[0]
    long_ago = utcnow() - timedelta(days=10)
    with world.sessions() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == other_device)).one()
        device.fw_version, device.battery_mv, device.last_seen_at = "1.1.0", 2100, long_ago

    def fleet(query: str) -> list[str]:
        answer = call(world, "GET", f"/operator/devices?{query}", token)
        assert answer.status_code == 200, answer.get_json()
        return [d["device_id"] for d in answer.get_json()["devices"]]

    everything = fleet("")
    assert set(everything) == {owner_device, other_device, world.unclaimed_device_id}
    assert fleet("fw_version=1.1.0") == [other_device]
    assert fleet("battery_below=2300") == [other_device]
    assert fleet("last_seen_before=" + (utcnow() - timedelta(days=1)).isoformat() + "Z") == [
        other_device, world.unclaimed_device_id]  # never seen counts as before
    assert fleet("last_seen_after=" + (utcnow() - timedelta(days=1)).isoformat() + "%2B00:00"
                 ) == [owner_device]
    assert fleet("model=button&status=active&limit=100") == everything
    assert fleet(f"batch_id={world.batch_id}&fw_version=9.9") == []
    first = call(world, "GET", "/operator/devices?limit=2", token).get_json()
    rest = call(world, "GET", first["next"].removeprefix("/api/v1"), token).get_json()
    assert [d["device_id"] for d in first["devices"] + rest["devices"]] == everything
    for when in ("yesterday", "2026-11-22", "2026-11-22T08:00:00", "0001-01-01T00:00:00+01:00"):
        assert_error(call(world, "GET", f"/operator/devices?last_seen_before={when}", token),
                     400, "BadRequest", "date-time")

    batch = call(world, "GET", f"/operator/batches/{world.batch_id}", token).get_json()
    assert (batch["devices"], batch["claimed"], batch["revoked"]) == (3, 2, 0)
    fleet_entry = call(world, "GET", f"/operator/devices/{other_device}", token).get_json()
    assert fleet_entry["claimed"] is True and "household_id" not in fleet_entry
    revoked = call(world, "POST", f"/operator/devices/{other_device}/revoke", token)
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    again = call(world, "POST", f"/operator/devices/{other_device}/revoke", token).get_json()
    assert again["revoked_at"] == revoked.get_json()["revoked_at"]
    assert fleet("status=revoked") == [other_device]
    batches = call(world, "GET", "/operator/batches", token).get_json()["batches"]
    assert [b["revoked"] for b in batches if b["id"] == world.batch_id] == [1]
    # The household sees its device revoked.
    assert call(world, "GET", f"/devices/{other_device}", world.other.token).get_json()[
        "status"] == "revoked"


def test_tokens_expire_and_their_owner_lists_and_revokes_them(world):
    from backend.storage.models import ApiToken

    owner, stranger = world.owner.token, world.stranger.token
    second = call(world, "POST", "/tokens", body={"email": world.owner.email,
                                                  "password": PASSWORD}).get_json()["token"]
    me = call(world, "GET", "/tokens/current", second).get_json()
    assert me["expires_at"] > me["created_at"]
    listed = call(world, "GET", "/tokens", second).get_json()["items"]
    assert len(listed) == 2 and [t["current"] for t in listed] == [False, True]
    assert all(t["expires_at"] for t in listed)
    theirs = call(world, "GET", "/tokens", stranger).get_json()["items"]
    assert len(theirs) == 1 and theirs[0]["id"] not in {t["id"] for t in listed}

    # Someone else's token: not found, and it keeps working.
    assert_error(call(world, "DELETE", f"/tokens/{theirs[0]['id']}", owner), 404, "NotFound")
    assert call(world, "GET", "/tokens/current", stranger).status_code == 200
    # One's own other token: revoked.
    assert call(world, "DELETE", f"/tokens/{listed[0]['id']}", second).status_code == 204
    assert_error(call(world, "GET", "/devices", owner), 401, "Unauthorized")
    assert call(world, "GET", "/devices", second).status_code == 200

    # Expired: refused with what to do.
    with world.sessions() as session, session.begin():
        row = session.get(ApiToken, listed[1]["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert_error(call(world, "GET", "/devices", second), 401, "Unauthorized",
                 "API token expired: log in again")


def test_a_user_changes_their_password_and_the_old_one_is_out(world):
    email = world.owner.email
    other = call(world, "POST", "/tokens", body={"email": email, "password": PASSWORD}
                 ).get_json()["token"]
    wrong = call(world, "POST", "/account/password", world.owner.token,
                 {"current_password": "not it at all", "new_password": "a new passphrase"})
    assert_error(wrong, 401, "Unauthorized", "the current password is wrong")
    with world.sessions() as session:  # counted as a failed log-in of that account
        assert session.get(AuthThrottle, f"login:{email}").failures == 1
    assert_error(call(world, "POST", "/account/password", world.owner.token,
                      {"current_password": PASSWORD, "new_password": "short"}),
                 400, "BadRequest")
    done = call(world, "POST", "/account/password", world.owner.token,
                {"current_password": PASSWORD, "new_password": "a new passphrase"})
    assert done.status_code == 204
    assert call(world, "GET", "/devices", world.owner.token).status_code == 200  # kept
    assert_error(call(world, "GET", "/devices", other), 401, "Unauthorized")  # revoked
    assert_error(call(world, "POST", "/tokens", body={"email": email, "password": PASSWORD}),
                 401, "Unauthorized")
    assert call(world, "POST", "/tokens", body={
        "email": email, "password": "a new passphrase"}).status_code == 201
