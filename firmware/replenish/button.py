"""The button role: a press becomes a signed event, the answer becomes an LED pattern."""

from replenish import protocol
from replenish.power import LOW_BATTERY_MV
from replenish.sender import (ALREADY_ORDERED, ERROR, NOT_CLAIMED,  # noqa: F401
                              NOT_CONFIGURED, ORDERED, RECORDED, Outcome)


class Button:
    def __init__(self, sender, led, low_battery_mv=LOW_BATTERY_MV):
        self._sender = sender
        self._led = led
        self._low_mv = low_battery_mv

    def press(self, slot=0, qty=None):
        outcome = self._sender.send(protocol.KIND_PRESS, slot, qty)
        self._led.show(outcome.pattern)
        mv = self._sender.last_battery_mv
        if mv is not None and mv < self._low_mv:
            self._led.show("low_battery")  # after the answer, so the answer stays readable
        return outcome

    def boot(self):
        outcome = self._sender.send(protocol.KIND_BOOT, 0, fw=self._sender.fw)
        self._led.show(outcome.pattern)
        return outcome
