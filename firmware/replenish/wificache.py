"""The last good Wi-Fi join, kept in RTC memory for the next wake's shortcut.

A returning device that knows its access point's BSSID and channel and its IP
configuration joins without a scan and without DHCP (hw/esp32.py). One record of 23
bytes: BSSID (6), channel (1), address, netmask, gateway, DNS (4 each). A power cut
erases it (RTC memory); so does forget(), after a shortcut that failed or a join that
got no answer at all.
"""

_SIZE = 23


def _ip(raw):
    return "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])


def _pack_ip(text):
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address")
    return bytes(int(p) for p in parts)


class Known:
    __slots__ = ("bssid", "channel", "address", "netmask", "gateway", "dns")

    def __init__(self, bssid, channel, address, netmask, gateway, dns):
        self.bssid = bssid
        self.channel = channel
        self.address = address
        self.netmask = netmask
        self.gateway = gateway
        self.dns = dns

    def ifconfig(self):
        """(address, netmask, gateway, dns) as WLAN.ifconfig() takes it."""
        return (self.address, self.netmask, self.gateway, self.dns)


def encode(bssid, channel, ifconfig):
    if len(bssid) != 6 or not 1 <= channel <= 14:
        raise ValueError("bad access point")
    out = bytearray(bssid)
    out.append(channel)
    for text in ifconfig:
        out.extend(_pack_ip(text))
    return bytes(out)


def decode(raw):
    """A Known, or None for a missing or damaged record."""
    if raw is None or len(raw) != _SIZE or not 1 <= raw[6] <= 14:
        return None
    address = _ip(raw[7:11])
    if address == "0.0.0.0":
        return None
    return Known(bytes(raw[:6]), raw[6], address, _ip(raw[11:15]), _ip(raw[15:19]),
                 _ip(raw[19:23]))


class WifiCache:
    def __init__(self, rtc):
        self._rtc = rtc

    def load(self):
        return decode(self._rtc.read())

    def save(self, bssid, channel, ifconfig):
        try:
            self._rtc.write(encode(bssid, channel, ifconfig))
        except ValueError:
            self.forget()  # an odd answer from the driver: no shortcut next time

    def forget(self):
        self._rtc.write(b"")
