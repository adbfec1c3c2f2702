"""Fulfillment: what moves an order from confirmed to delivered.

`Fulfillment` is the interface. `SimulatedWarehouse` is the embedded default (a
warehouse and carrier that need nothing installed); `WebhookMerchant` talks to a real
merchant over signed HTTP. Test-mode orders always go to the simulator.
"""

from backend.orders.fulfillment.base import (
           Fulfillment,
           MerchantUnreachable,
           Placement,
           PlaceRequest,
)
from backend.orders.fulfillment.simulator import SimulatedWarehouse
from backend.orders.fulfillment.webhook import WebhookMerchant

__all__ = ["Fulfillment", "MerchantUnreachable", "Placement", "PlaceRequest",
           "SimulatedWarehouse", "WebhookMerchant"]
