"""Consent before money (issue 17; the Munich ruling against the Dash button, 29 U
1091/18): a slot orders exactly the product the household chose, at no more than the
price it confirmed for it (plus its tolerance). Anything else waits for the household.

- `order_fields`: the snapshot an order keeps of its product and price, and why it must
  wait (None: it may be placed as usual).
- `confirm` / `decline` (decline is `lifecycle.cancel_by_household`): the household's
  answer, from the web page or the API.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.errors import Conflict
from backend.orders import display
from backend.orders import lifecycle as orders
from backend.orders.lifecycle import State
from backend.storage.models import Household, Order, Product, Slot

REASONS = ("price_increased", "unavailable", "currency_changed")
TOLERANCE_MAX_PCT = 100


def price_limit(confirmed_minor: int, tolerance_pct: int) -> int:
    """The most a pack may cost without asking: confirmed + tolerance, rounded down."""
    return confirmed_minor + confirmed_minor * max(0, tolerance_pct) // 100


def reason(product: Product | None, slot, household) -> str | None:
    """Why an order for `slot` must wait for the household, or None."""
    if product is None or not product.available:
        return "unavailable"
    confirmed = slot.confirmed_price_minor
    if confirmed is None:  # never confirmed (should not happen after migration 0008)
        return "price_increased"
    if slot.confirmed_currency and slot.confirmed_currency != product.currency:
        return "currency_changed"
    tolerance = getattr(household, "price_tolerance_pct", 0) or 0
    if product.price_cents > price_limit(confirmed, tolerance):
        return "price_increased"
    return None


def order_fields(product: Product | None, slot, household, quantity: int) -> dict:
    """Order columns for a new order on `slot`: the snapshot and the consent decision."""
    price = product.price_cents if product else 0
    return {
        "product_sku": slot.product_sku,
        "quantity": quantity,
        "unit_price_cents": price,
        "total_cents": price * quantity,
        "product_name": product.name if product else slot.product_sku,
        "product_brand": product.brand if product else None,
        "pack_amount": product.package_amount if product else None,
        "pack_unit": product.unit if product else None,
        "currency": product.currency if product else slot.confirmed_currency,
        "confirmed_price_minor": slot.confirmed_price_minor,
        "consent_reason": reason(product, slot, household),
    }


def confirm(session: Session, order: Order, household_id: int,
            agreed_price_minor: int | None = None) -> Order:
    """The household says yes to an order waiting for it: at most `agreed_price_minor`
    a pack (default: the price it was shown, the order's snapshot). The order is placed
    at today's price if that is no higher; the slot remembers the price as confirmed,
    so the next press at that price goes through."""
    if order.state != State.AWAITING_CONSENT:
        raise orders.IllegalTransition(
            f"order {order.id} is {order.state}: only an order awaiting consent can be "
            "confirmed")
    household = session.get(Household, household_id)
    where = household.locale if household else None
    product = session.get(Product, order.product_sku)
    if product is None or not product.available:
        raise Conflict(f"order {order.id}: the product is still unavailable; decline the "
                       "order or confirm it when it is back")
    agreed = order.unit_price_cents if agreed_price_minor is None else agreed_price_minor
    if product.currency != order.currency or product.price_cents > agreed:
        raise Conflict(f"order {order.id}: the price is now "
                       f"{display.money(product.price_cents, product.currency, where)} a "
                       f"pack, more than the "
                       f"{display.money(agreed, order.currency, where)} confirmed; "
                       "confirm that price or decline")
    order.unit_price_cents = product.price_cents
    order.total_cents = product.price_cents * order.quantity
    slot = session.query(Slot).filter_by(device_pk=order.device_pk,
                                         index=order.slot_index).one_or_none()
    if slot is not None and slot.product_sku == order.product_sku:
        slot.confirmed_price_minor = product.price_cents
        slot.confirmed_currency = product.currency
    price = display.money(product.price_cents, product.currency, where)
    if not orders.transition(session, order, State.CONFIRMED,
                             actor=f"household:{household_id}",
                             reason=f"confirmed by household at {price} a pack"):
        raise orders.IllegalTransition(f"order {order.id} changed meanwhile; reload and retry")
    return order


def record_confirmed_price(slot: Slot, product: Product) -> None:
    """A slot's product chosen (or re-confirmed) at the catalogue's price now."""
    slot.confirmed_price_minor = product.price_cents
    slot.confirmed_currency = product.currency
