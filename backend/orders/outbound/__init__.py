"""Outbound HTTP (household webhooks, the merchant): where calls may go (`policy`), one
call bounded in time with no redirects (`client`), and isolation between destinations
and households (`dispatch`)."""

from backend.orders.outbound.client import Answer, Outbound, OutboundError, Timeouts
from backend.orders.outbound.dispatch import Breaker, Dispatcher, Job, Limits
from backend.orders.outbound.policy import AddressPolicy, AddressRefused, Destination

__all__ = ["AddressPolicy", "AddressRefused", "Answer", "Breaker", "Destination",
           "Dispatcher", "Job", "Limits", "Outbound", "OutboundError", "Timeouts"]
