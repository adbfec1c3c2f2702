"""A household removes a device: what happens to its orders, then the device goes back
to unclaimed (backend/accounts/devices.py `unclaim`).

Orders still waiting for the household (pending in the hold window, awaiting consent)
are cancelled: nobody could answer for them any more. An order already on its way to a
merchant is not: removing the device is refused until it is delivered or failed, so a
device claimed again never finds another household's open order on its slot.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.accounts import devices as device_accounts
from backend.errors import Conflict
from backend.orders import lifecycle as orders
from backend.storage.models import Device, Order


def remove_device(session: Session, device: Device, household_id: int) -> int:
    """Unclaim `device` for its household; returns how many orders were cancelled."""
    open_orders = list(session.scalars(select(Order).where(
        Order.device_pk == device.id, Order.state.in_(orders.OPEN_STATES))
        .order_by(Order.id)))
    in_flight = [o for o in open_orders
                 if o.state not in orders.CANCELLABLE_BY_HOUSEHOLD]
    if in_flight:
        raise Conflict(f"order {in_flight[0].id} from this device is {in_flight[0].state}: "
                       "remove the device once it is delivered")
    for order in open_orders:
        if not orders.transition(session, order, orders.State.CANCELLED,
                                 actor=f"household:{household_id}",
                                 reason="device removed"):
            raise orders.IllegalTransition(f"order {order.id} changed meanwhile; retry")
    device_accounts.unclaim(session, device)
    return len(open_orders)
