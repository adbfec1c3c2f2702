"""Every firmware module compiles with mpy-cross; the core imports nothing ESP32-only."""

import re

import pytest

from devtools.mpy import FIRMWARE, mpy_cross, run_snippet

SOURCES = sorted(FIRMWARE.rglob("*.py"))
CORE = sorted((FIRMWARE / "replenish").glob("*.py"))
FORBIDDEN = {"machine", "network", "esp32", "esp", "neopixel", "bluetooth", "hw"}
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w., ]+))", re.M)


def imported_modules(text):
    names = set()
    for frm, imp in IMPORT.findall(text):
        for name in ([frm] if frm else imp.split(",")):
            names.add(name.strip().split(" ")[0].split(".")[0])
    return names


def test_sources_found():
    assert len(CORE) >= 9 and FIRMWARE / "main.py" in SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_compiles_with_mpy_cross(source, tmp_path):
    out = tmp_path / (source.stem + ".mpy")
    result = mpy_cross(source, out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:1] == b"M"


def test_import_scanner_sees_machine():
    assert "machine" in imported_modules("import os\nfrom machine import Pin\n")
    assert "network" in imported_modules("import time, network as net\n")


@pytest.mark.parametrize("source", CORE, ids=lambda p: p.name)
def test_core_imports_nothing_port_specific(source):
    assert not imported_modules(source.read_text()) & FORBIDDEN


def test_only_entry_point_and_esp32_layer_touch_machine():
    touching = {p.relative_to(FIRMWARE).as_posix() for p in SOURCES
                if imported_modules(p.read_text()) & {"machine", "network", "esp32"}}
    assert touching == {"main.py", "hw/esp32.py"}


def test_core_imports_on_unix_port_without_network(tmp_path):
    result = run_snippet(r"""
import sys
import replenish, replenish.cbor, replenish.hmac_sha256, replenish.cose
import replenish.protocol, replenish.coap, replenish.client, replenish.counter
import replenish.button, replenish.identity, replenish.queue, replenish.sender
import replenish.sensor, replenish.hx711, replenish.pulses, replenish.setup
import replenish.power, replenish.leds, replenish.storage, replenish.wake, replenish.hal
import replenish.backoff, replenish.wificache
bad = [m for m in ("network", "esp32", "machine") if m in sys.modules]
print("LOADED", bad)
for name in ("network", "esp32"):
    try:
        __import__(name)
        print("HAS", name)
    except ImportError:
        pass
""", tmp_path)
    lines = result.stdout.split("\n")
    assert "HAS network" not in lines and "HAS esp32" not in lines
    assert "LOADED []" in lines
