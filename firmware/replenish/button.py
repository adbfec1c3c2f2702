"""The button role: a press becomes a signed event, the answer becomes an LED pattern.

The press is signed into the flash queue first, and only then is the network brought
up (`connect`, from the wake routine): whatever happens to the join or the send, the
press is already durable and goes out in order at a later wake.
"""

from replenish import protocol
from replenish.power import LOW_BATTERY_MV
from replenish.sender import (ALREADY_ORDERED, ERROR, NOT_CLAIMED,  # noqa: F401
                              NOT_CONFIGURED, ORDERED, RECORDED, Outcome)


def _connected():
    return None


class Button:
    def __init__(self, sender, led, low_battery_mv=LOW_BATTERY_MV, connect=_connected):
        self._sender = sender
        self._led = led
        self._low_mv = low_battery_mv
        self._connect = connect  # brings the network up (once) after the record

    def press(self, slot=0, qty=None):
        self._led.show("sending")  # at once: the join takes a while
        seq = self._sender.record(protocol.KIND_PRESS, slot, qty)
        self._connect()
        outcome = self._sender.send_recorded(seq)
        self._led.show(outcome.pattern)
        mv = self._sender.last_battery_mv
        if mv is not None and mv < self._low_mv:
            self._led.show("low_battery")  # after the answer, so the answer stays readable
        return outcome

    def boot(self):
        self._connect()
        outcome = self._sender.send(protocol.KIND_BOOT, 0, fw=self._sender.fw)
        self._led.show(outcome.pattern)
        return outcome
