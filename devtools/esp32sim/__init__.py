"""Simulated ESP32 boards (ESP32, ESP32-C3, ESP32-S3, ESP32-C6) for MicroPython's unix
port: the test-side stand-ins for silicon that run the shipped firmware/main.py.

device/   machine, esp32, network, time, socket for the micropython process (per chip)
harness   CPython: runs wake after wake, plays the RTC domain and the wake sources
world     the real backend on loopback, provisioning, flash images
energy    datasheet currents per power state, charge per press, battery life
life      a device's life per board; `python -m devtools.esp32sim` (make firmware-sim)
"""
