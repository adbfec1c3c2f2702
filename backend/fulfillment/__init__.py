"""Fulfillment: what moves an order from pending to delivered.

`Fulfillment` is the interface; `SimulatedWarehouse` is the embedded default (a
warehouse and carrier that need nothing installed). A webhook merchant adapter
implements the same interface later.
"""

from backend.fulfillment.base import Fulfillment, FulfillmentWorker
from backend.fulfillment.simulator import SimulatedWarehouse

__all__ = ["Fulfillment", "FulfillmentWorker", "SimulatedWarehouse"]
