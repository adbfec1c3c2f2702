"""Removing a device (API, both databases): it goes back to unclaimed, its waiting orders
are cancelled, its events are refused until it is claimed again; and a revoked device
tells its household."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from backend.accounts import devices
from backend.storage.models import Device, Order, Slot
from tests import api_world
from tests.backend.web.test_api_v1 import call


@pytest.fixture
def world(db_url, tmp_path) -> api_world.ApiWorld:
    return api_world.build(tmp_path, db_url)


def test_remove_then_claim_again(world):
    owner = world.owner
    device_id = owner.device_ids[0]
    with world.sessions() as session, session.begin():  # the confirmed order delivered
        session.get(Order, owner.order_ids[1]).state = "delivered"
    assert call(world, "DELETE", f"/devices/{device_id}", owner.token).status_code == 204
    assert call(world, "GET", f"/devices/{device_id}", owner.token).status_code == 404
    listed = call(world, "GET", "/orders?limit=100", owner.token).get_json()["orders"]
    states = {o["id"]: (o["state"], o["history"][-1]["reason"]) for o in listed}
    for waiting in (owner.order_ids[0], owner.order_ids[2], owner.order_ids[3]):
        assert states[waiting] == ("cancelled", "device removed")
    with world.sessions() as session:
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        assert (device.household_id, device.name, device.claimed_at) == (None, None, None)
        assert session.scalars(select(Slot).where(Slot.device_pk == device.id)).all() == []
    # Claimable again with its label's code, by anyone who has the label.
    claimed = call(world, "POST", "/devices/claim", world.other.token,
                   {"code": owner.claim_codes[0]})
    assert claimed.status_code == 201 and claimed.get_json()["slots"] == []


def test_a_revoked_device_tells_its_household(world):
    device_id = world.owner.device_ids[0]
    with world.sessions() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        assert devices.revoke(session, device) is True
        assert devices.revoke(session, device) is False  # once
    notes = call(world, "GET", "/notifications?limit=100", world.owner.token).get_json()
    revoked = [n for n in notes["notifications"] if n["kind"] == "device_revoked"]
    assert len(revoked) == 1 and revoked[0]["device_id"] == device_id
    assert "revoked by the manufacturer" in revoked[0]["message"]
    answer = call(world, "GET", f"/devices/{device_id}", world.owner.token).get_json()
    assert answer["status"] == "revoked"
