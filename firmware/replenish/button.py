"""The button role: a press becomes a signed event, the answer becomes an LED pattern."""

from replenish import protocol
from replenish.sender import (ALREADY_ORDERED, ERROR, NOT_CLAIMED,  # noqa: F401
                              NOT_CONFIGURED, ORDERED, RECORDED, Outcome)


class Button:
    def __init__(self, sender, led):
        self._sender = sender
        self._led = led

    def press(self, slot=0, qty=None):
        outcome = self._sender.send(protocol.KIND_PRESS, slot, qty)
        self._led.show(outcome.pattern)
        return outcome

    def boot(self):
        outcome = self._sender.send(protocol.KIND_BOOT, 0, fw=self._sender.fw)
        self._led.show(outcome.pattern)
        return outcome
