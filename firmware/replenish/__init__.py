"""Replenish firmware core: portable MicroPython (unix port and ESP32).

Nothing in this package may import machine, network, esp32 or any other
port-specific module: hardware is passed in by the entry point.
"""

VERSION = "0.2.0"
