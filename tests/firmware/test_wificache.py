"""The last good Wi-Fi join in RTC memory (replenish/wificache.py) on MicroPython."""

from devtools.mpy import run_snippet


def test_round_trip_and_refusals(tmp_path):
    out = run_snippet(r"""
from replenish import wificache
class Rec:
    data = None
    def read(self): return self.data
    def write(self, d): self.data = bytes(d)
rec = Rec()
cache = wificache.WifiCache(rec)
print(cache.load())                                   # nothing yet
cache.save(b"\xa0\xb1\xc2\xd3\xe4\xf5", 6, ("192.168.1.23", "255.255.255.0",
                                             "192.168.1.1", "192.168.1.1"))
known = cache.load()
print(len(rec.data), known.bssid == b"\xa0\xb1\xc2\xd3\xe4\xf5", known.channel)
print(known.ifconfig())
cache.save(b"\x00" * 6, 6, ("not an address", "", "", ""))   # odd driver answer
print(cache.load())
rec.data = b"\x00" * 23                               # channel 0: damaged
print(cache.load())
cache.save(b"\x01" * 6, 11, ("10.0.0.5", "255.0.0.0", "10.0.0.1", "10.0.0.1"))
cache.forget()
print(cache.load())
""", tmp_path).stdout.split("\n")
    assert out[:6] == ["None", "23 True 6",
                       "('192.168.1.23', '255.255.255.0', '192.168.1.1', '192.168.1.1')",
                       "None", "None", "None"]
