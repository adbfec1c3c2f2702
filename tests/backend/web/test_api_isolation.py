"""Isolation: for every API endpoint that takes an id, another household's token gets 404
and the database is exactly as before; operator endpoints refuse household tokens (403)
and household endpoints refuse operator tokens (403). Real app, real databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from backend.storage.models import Base
from tests import api_world
from tests.conftest import DATABASES


@pytest.fixture(scope="module", params=DATABASES)
def world(request, tmp_path_factory) -> api_world.ApiWorld:
    tmp = tmp_path_factory.mktemp(request.param)
    url = (request.getfixturevalue("postgres_server").new_database()
           if request.param == "postgresql" else f"sqlite:///{tmp / 'api.db'}")
    return api_world.build(tmp, url)


def snapshot(world) -> dict:
    """Every row of every table."""
    with world.sessions() as session:
        return {table.name: sorted(map(tuple, session.execute(select(table)).all()), key=repr)
                for table in Base.metadata.sorted_tables}


def call(world, token, method, path, body=None):
    client = world.app.test_client()
    return client.open(f"/api/v1{path}", method=method, json=body,
                       headers=world.headers(token))


# Each takes the owner's party and gives (method, path, body) aimed at the owner's things.
BY_ID = {
    "get device": lambda o: ("GET", f"/devices/{o.device_ids[0]}", None),
    "rename device": lambda o: ("PATCH", f"/devices/{o.device_ids[0]}", {"name": "mine now"}),
    "test mode": lambda o: ("PATCH", f"/devices/{o.device_ids[0]}", {"test_mode": True}),
    "configure slot": lambda o: ("PUT", f"/devices/{o.device_ids[0]}/slots/0",
                                 {"product_sku": "COFFEE-BEANS-1KG", "quantity": 5}),
    "add slot": lambda o: ("PUT", f"/devices/{o.device_ids[0]}/slots/7",
                           {"product_sku": "COFFEE-BEANS-1KG"}),
    "level history": lambda o: ("GET", f"/devices/{o.device_ids[0]}/slots/1/levels", None),
    "forecast": lambda o: ("GET", f"/devices/{o.device_ids[0]}/slots/1/forecast", None),
    "get order": lambda o: ("GET", f"/orders/{o.order_ids[0]}", None),
    "cancel order": lambda o: ("POST", f"/orders/{o.order_ids[0]}/cancel", None),
    "confirm order": lambda o: ("POST", f"/orders/{o.order_ids[2]}/confirm", None),
    "decline order": lambda o: ("POST", f"/orders/{o.order_ids[3]}/decline", None),
    "remove device": lambda o: ("DELETE", f"/devices/{o.device_ids[0]}", None),
    "read notification": lambda o: ("POST", f"/notifications/{o.notification_ids[0]}/read",
                                    None),
}


def id_routes(app) -> set[tuple[str, str]]:
    """(method, rule) of every API route that takes an id, read from the app's route map."""
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("api.") and rule.arguments
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def route_of(app, method: str, path: str) -> tuple[str, str]:
    """The (method, rule) a request is routed to."""
    rule, _args = app.url_map.bind("localhost").match(f"/api/v1{path}", method=method,
                                                      return_rule=True)
    return method, rule.rule


def test_every_api_route_with_an_id_has_an_isolation_test(world):
    """A new id route fails here until BY_ID or OPERATOR_ONLY aims at it."""
    tested = {route_of(world.app, *BY_ID[name](world.owner)[:2]) for name in BY_ID}
    tested |= {route_of(world.app, *OPERATOR_ONLY[name](world)) for name in OPERATOR_ONLY}
    assert id_routes(world.app) - tested - set(ISOLATED_ELSEWHERE) == set()
    from tests.backend.web import test_api_v1

    assert all(hasattr(test_api_v1, name) for name in ISOLATED_ELSEWHERE.values())
    assert len(id_routes(world.app)) >= 11  # the map was read


# Id routes whose isolation is tested in another file: (method, rule) -> test there.
ISOLATED_ELSEWHERE = {
    ("DELETE", "/api/v1/tokens/<int:token_id>"):
        "test_tokens_expire_and_their_owner_lists_and_revokes_them",
}


@pytest.mark.parametrize("endpoint", BY_ID)
def test_another_household_gets_404_and_changes_nothing(world, endpoint):
    method, path, body = BY_ID[endpoint](world.owner)
    before = snapshot(world)
    for intruder in (world.other, world.stranger):
        answer = call(world, intruder.token, method, path, body)
        assert answer.status_code == 404, (endpoint, answer.get_json())
        assert answer.get_json()["error"]["code"] == "NotFound"
        assert "DETERGENT" not in answer.get_data(as_text=True)
    assert snapshot(world) == before
    # The same request with the owner's token works: the 404 was isolation, not a typo.
    # (Removing the device is refused with 409 while one of its orders is with a
    # merchant, which the world's are: the route found the device, and the world stays.)
    expected = 409 if endpoint == "remove device" else 200
    assert call(world, world.owner.token, method, path, body).status_code == expected


def test_claiming_another_households_device_is_refused_and_changes_nothing(world):
    """Even with the right code (someone saw the label): 409, and the owner keeps it."""
    before = snapshot(world)
    answer = call(world, world.other.token, "POST", "/devices/claim",
                  {"code": world.owner.claim_codes[0].replace("-", "").lower()})
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "Conflict"
    assert snapshot(world) == before
    devices = call(world, world.owner.token, "GET", "/devices").get_json()["devices"]
    assert [d["device_id"] for d in devices] == world.owner.device_ids


def test_lists_show_only_the_households_own_things(world):
    for party, others in ((world.owner, world.other), (world.other, world.owner)):
        devices = call(world, party.token, "GET", "/devices").get_json()["devices"]
        assert {d["device_id"] for d in devices} == set(party.device_ids)
        listed = call(world, party.token, "GET", "/orders?limit=100").get_json()["orders"]
        assert {o["id"] for o in listed} == set(party.order_ids)
        notes = call(world, party.token, "GET", "/notifications?limit=100").get_json()
        ids = {n["id"] for n in notes["notifications"]}
        assert set(party.notification_ids) <= ids and not ids & set(others.notification_ids)
    for name in ("devices", "orders", "notifications"):
        assert call(world, world.stranger.token, "GET", f"/{name}").get_json()[name] == []


OPERATOR_ONLY = {
    "batches": lambda w: ("GET", "/operator/batches"),
    "batch": lambda w: ("GET", f"/operator/batches/{w.batch_id}"),
    "fleet": lambda w: ("GET", "/operator/devices"),
    "fleet device": lambda w: ("GET", f"/operator/devices/{w.owner.device_ids[0]}"),
    "revoke": lambda w: ("POST", f"/operator/devices/{w.owner.device_ids[0]}/revoke"),
    "change product": lambda w: ("PATCH", "/operator/products/DETERGENT-1L"),
}


@pytest.mark.parametrize("endpoint", OPERATOR_ONLY)
def test_operator_endpoints_refuse_household_tokens(world, endpoint):
    method, path = OPERATOR_ONLY[endpoint](world)
    before = snapshot(world)
    for party in (world.owner, world.other, world.stranger):
        answer = call(world, party.token, method, path)
        assert answer.status_code == 403, answer.get_json()
        assert answer.get_json()["error"]["code"] == "Forbidden"
    assert snapshot(world) == before
    if method == "GET":
        assert call(world, world.operator_token, method, path).status_code == 200


@pytest.mark.parametrize("endpoint", ["get device", "get order", "read notification",
                                      "cancel order", "rename device"])
def test_household_endpoints_refuse_operator_tokens(world, endpoint):
    method, path, body = BY_ID[endpoint](world.other)
    before = snapshot(world)
    answer = call(world, world.operator_token, method, path, body)
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "Forbidden"
    for path in ("/devices", "/orders", "/notifications", "/household"):
        assert call(world, world.operator_token, "GET", path).status_code == 403
    assert snapshot(world) == before


def test_removing_another_households_device_is_404_and_an_order_in_flight_blocks_it(world):
    """DELETE /devices/<id>: strangers get 404 and change nothing; the owner's device has
    a confirmed order on its way, so even the owner gets 409 and nothing changes."""
    path = f"/devices/{world.owner.device_ids[0]}"
    before = snapshot(world)
    for intruder in (world.other, world.stranger):
        answer = call(world, intruder.token, "DELETE", path)
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "NotFound"
    answer = call(world, world.owner.token, "DELETE", path)
    assert answer.status_code == 409 and "remove the device once it is delivered" in (
        answer.get_json()["error"]["message"])
    assert snapshot(world) == before
