"""Simulated `network` of MicroPython 1.29's esp32 port (network_wlan.c,
modnetwork_globals.h), with a scripted Wi-Fi world from in.json:

    {"ssid", "password", "channel", "bssid", "rssi", "dhcp_ms",
     "fault": null | "ap_absent" | "wrong_password" | "slow_dhcp"}

connect() is asynchronous as on the chip: isconnected() turns True once the simulated
scan, association, 4-way handshake and DHCP have taken their time on the virtual
clock. Timings are estimates (docs/firmware.md lists them); the radio's power state is
accounted for each phase.
"""

import _sim

# Estimates (see docs/firmware.md "What the simulation cannot know"): ESP-IDF's
# default active scan dwells up to 120 ms per channel; a fast scan stops at the AP.
START_MS = 80  # esp_wifi_start with PHY calibration data in NVS
SCAN_PER_CHANNEL_MS = 60
CHANNELS = 13
ASSOC_MS = 30  # authentication + association
HANDSHAKE_MS = 40  # WPA2 4-way handshake
WRONG_PASSWORD_MS = 3000  # EAPOL retries until the 4-way handshake times out
DHCP_MS = 250
SLOW_DHCP_MS = 8000
AP_IP = "192.168.4.1"  # the esp-netif default SoftAP address
STA_IP = ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")

STAT_IDLE = 1000  # modnetwork.h
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201  # WIFI_REASON_NO_AP_FOUND
STAT_WRONG_PASSWORD = 202  # WIFI_REASON_AUTH_FAIL
STAT_BEACON_TIMEOUT = 200
STAT_ASSOC_FAIL = 203
STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STA_IF = 0
AP_IF = 1
AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
AUTH_WPA2_ENTERPRISE = 5
AUTH_WPA3_PSK = 6
AUTH_WPA2_WPA3_PSK = 7
MODE_11B = 1
MODE_11G = 2
MODE_11N = 4
MODE_LR = 8

_hostname = "mpy-" + _sim.state.get("chip", "esp32")  # MICROPY_PY_NETWORK_HOSTNAME_DEFAULT


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def country(code=None):
    return "01" if code is None else None


def phy_mode(mode=None):
    return MODE_11N if mode is None else None


def ipconfig(*args, **kwargs):
    raise NotImplementedError("network.ipconfig is not simulated")


def _world():
    return _sim.state.get("wifi") or {}


def _active_radios():
    return [w for w in WLAN._ifs.values() if w._active]


def _radio_settle():
    if not _active_radios():
        _sim.set_radio("off")


class WLAN:
    IF_STA = 0
    IF_AP = 1
    SEC_OPEN = 0
    SEC_WEP = 1
    SEC_WPA = 2
    SEC_WPA2 = 3
    SEC_WPA_WPA2 = 4
    SEC_WPA2_ENT = 5
    SEC_WPA3 = 6
    SEC_WPA2_WPA3 = 7
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2
    _ifs = {}

    def __new__(cls, interface=0):
        if interface not in (0, 1):
            raise ValueError("invalid WLAN interface identifier")
        self = WLAN._ifs.get(interface)
        if self is None:
            self = object.__new__(cls)
            self._if = interface
            self._active = False
            self._status = STAT_IDLE
            self._ip_at = None  # world time the STA gets its IP
            self._fail_at = None  # (world time, status) a failed join reports
            self._static = None
            self._channel = 0
            self._essid = "ESP_" + _sim.state.get("mac", "000001")[-6:].upper()
            self._password = ""
            WLAN._ifs[interface] = self
        return self

    def __init__(self, interface=0):
        pass

    def active(self, on=None):
        if on is None:
            return self._active
        _sim.check_alive()
        if on and not self._active:
            _sim.set_radio("ap" if self._if == 1 else "rx")
            _sim.advance(START_MS * 1000)
            self._active = True
        elif not on and self._active:
            self._active = False
            self._status = STAT_IDLE
            self._ip_at = None
            _sim.plan_radio([])
            _radio_settle()
        return None

    def _require(self):
        if not self._active:
            raise OSError("Wifi Not Started")  # ESP_ERR_WIFI_NOT_STARTED

    def connect(self, ssid=None, key=None, *, bssid=None):
        """network_wlan.c: with arguments a fresh station config (channel 0) is written;
        a bare connect() joins with the stored one (config(channel=) included)."""
        self._require()
        if self._if != 0:
            raise OSError("Wifi Invalid Mode")
        if ssid is not None:
            self._sta_cfg = (ssid, key or "", bssid)
            self._channel = 0
        elif getattr(self, "_sta_cfg", None) is None:
            raise OSError("Wifi Invalid Argument")
        ssid, key, bssid = self._sta_cfg
        world = _world()
        now = _sim.now_us
        if bssid is not None and self._channel:
            scan_ms = SCAN_PER_CHANNEL_MS  # cached BSSID and channel: one channel
        else:
            scan_ms = SCAN_PER_CHANNEL_MS * world.get("channel", 6)  # fast scan
        self._status = STAT_CONNECTING
        self._ip_at = None
        self._fail_at = None
        fault = world.get("fault")
        wrong = ssid != world.get("ssid") or fault == "ap_absent"
        if bssid is not None and bytes(bssid).hex() != world.get("bssid", ""):
            wrong = True
        one_channel = bssid is not None and self._channel
        if one_channel and self._channel != world.get("channel", 6):
            wrong = True  # the access point moved: nothing on the cached channel
        if wrong:
            # nothing answers: the scan runs out (every channel, or the cached one)
            at = now + (scan_ms if one_channel else SCAN_PER_CHANNEL_MS * CHANNELS) * 1000
            self._fail_at = (at, STAT_NO_AP_FOUND)
            _sim.plan_radio([(now, "assoc"), (at, "rx")])
            return
        if key != world.get("password") or fault == "wrong_password":
            at = now + (scan_ms + ASSOC_MS + WRONG_PASSWORD_MS) * 1000
            self._fail_at = (at, STAT_WRONG_PASSWORD)
            _sim.plan_radio([(now, "assoc"), (at, "rx")])
            return
        assoc_done = now + (scan_ms + ASSOC_MS + HANDSHAKE_MS) * 1000
        dhcp_ms = 0 if self._static else world.get(
            "dhcp_ms", SLOW_DHCP_MS if fault == "slow_dhcp" else DHCP_MS)
        self._ip_at = assoc_done + dhcp_ms * 1000
        self._channel = world.get("channel", 6)
        _sim.plan_radio([(now, "assoc"), (assoc_done, "dhcp"), (self._ip_at, "idle")])

    def _update(self):
        _sim.call()
        now = _sim.now_us
        if self._fail_at and now >= self._fail_at[0]:
            self._status = self._fail_at[1]
        elif self._ip_at is not None and now >= self._ip_at:
            self._status = STAT_GOT_IP

    def isconnected(self):
        if not self._active:
            return False
        self._update()
        if self._if == 1:
            return False
        return self._status == STAT_GOT_IP

    def disconnect(self):
        self._require()
        self._status = STAT_IDLE
        self._ip_at = None
        self._fail_at = None
        _sim.plan_radio([])
        _sim.set_radio("rx")

    def status(self, param=None):
        if param is None:
            if self._active:
                self._update()
            return self._status
        if param == "rssi":
            if not self.isconnected():
                raise OSError("Wifi Not Connected")  # ESP_ERR_WIFI_NOT_CONNECT
            return _world().get("rssi", -60)
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def scan(self):
        self._require()
        _sim.advance(SCAN_PER_CHANNEL_MS * CHANNELS * 1000)
        world = _world()
        if world.get("fault") == "ap_absent" or not world.get("ssid"):
            return []
        return [(world["ssid"].encode(), bytes.fromhex(world.get("bssid", "000000000000")),
                 world.get("channel", 6), world.get("rssi", -60), 3, False)]

    def ifconfig(self, config=None):
        if config is None:
            if self._if == 1:
                return (AP_IP, "255.255.255.0", AP_IP, "0.0.0.0") if self._active else (
                    "0.0.0.0",) * 4
            if self.isconnected():
                return self._static or STA_IP
            return ("0.0.0.0",) * 4
        if config == "dhcp":
            self._static = None  # network_common.c esp_ifconfig: restart the DHCP client
            return None
        self._static = tuple(config)  # static IP: the DHCP client is stopped
        return None

    def config(self, *args, **kwargs):
        if args:
            name = args[0]
            if name == "channel":
                return self._channel
            if name in ("ssid", "essid"):
                return self._essid if self._if == 1 else _world().get("ssid", "")
            if name == "mac":
                return bytes.fromhex(_sim.state.get("mac", "246f28000001"))
            if name in ("hostname", "dhcp_hostname"):
                return _hostname
            if name == "pm":
                return WLAN.PM_PERFORMANCE
            raise ValueError("unknown config param")
        for name, value in kwargs.items():
            if name == "channel":
                self._channel = value
            elif name in ("ssid", "essid"):
                self._essid = value
            elif name in ("key", "password"):
                if self._if == 1 and value and len(value) < 8:
                    raise OSError("Wifi Invalid Password")  # ESP_ERR_WIFI_PASSWORD
                self._password = value
            elif name not in ("authmode", "security", "max_clients", "hidden", "pm",
                              "txpower", "reconnects", "hostname", "dhcp_hostname",
                              "protocol", "mac"):
                raise ValueError("unknown config param")
        return None


def _radio_up():
    sta = WLAN._ifs.get(0)
    return sta is not None and sta.isconnected()


def _ap_up():
    ap = WLAN._ifs.get(1)
    return ap is not None and ap._active
