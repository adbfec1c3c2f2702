"""The seam between the wake routine (replenish/wake.py) and a hardware layer.

hw/esp32.py (machine, network, esp32) and hw/unix.py (the MicroPython unix port)
subclass Hardware; the portable core calls nothing else of theirs. Each method says
what the wake routine relies on; the defaults are what a layer without that part does.
"""


class Hardware:
    """Attributes a layer sets: `storage` (named records in flash: read(name),
    write(name, bytes)), `led` (show(pattern), off()), `battery` (read_mv(), or None
    when the board measures none), `clock` (ticks_ms(), sleep_us(n): drivers and setup
    mode)."""

    def rtc(self, index):
        """Record `index` in memory that survives deep sleep, not a power cut:
        read() -> bytes or None, write(bytes) (at most 30 bytes)."""
        raise NotImplementedError

    def feed(self):
        """Tell the task watchdog this wake is still alive; called in every long wait."""

    def wake_reason(self):
        """power.WAKE_POWER_ON, WAKE_BUTTON, WAKE_TIMER or WAKE_PULSE."""
        return "power_on"

    def held_ms(self, limit_ms):
        """How long the button has been held since the wake (up to limit_ms): 0 when
        it was let go before the firmware could look."""
        return 0

    def connect(self, wifi, host, port):
        """Join the network (wifi: {"ssid", "password"}), then a CoAP client for
        host:port; None when the network is not reachable."""
        raise NotImplementedError

    def rssi(self):
        return None

    def forget_network(self):
        """The network was joined but nothing answered: drop any cached access point
        and IP configuration so the next wake joins from scratch."""

    def load_cell(self, hx711):
        """An HX711 driver (replenish.hx711) on the profile's pins (board "hx711")."""
        raise NotImplementedError

    def setup_listener(self, essid, secret, port):
        """A listening TCP socket for setup mode (an access point on a device)."""
        raise NotImplementedError

    def setup_done(self):
        """Setup mode ended: take the access point down."""

    def sleep(self, timer_s, board):
        """Arm the wake sources for `board` and deep-sleep (timer_s None: pins only).
        Returns only where there is no deep sleep (the unix port)."""

    def reset(self):
        """Restart (after new Wi-Fi credentials or an installed update)."""
