"""ESP32 entry point: join Wi-Fi (bundle wifi.json), send a boot event, then one event per press.

The bundle (identity.json, board.json) lives in /bundle on the device's flash.
"""

import json
import socket
import time

import network

from hw import esp32
from replenish import identity
from replenish.button import Button
from replenish.client import Client
from replenish.counter import SeqCounter

BUNDLE = "/bundle"
_WIFI_TIMEOUT_MS = 20000


def connect_wifi():
    """Credentials from <bundle>/wifi.json: {"ssid": ..., "password": ...}."""
    try:
        with open(BUNDLE + "/wifi.json") as f:
            wifi = json.load(f)
    except (OSError, ValueError):
        wifi = {}
    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(wifi.get("ssid", ""), wifi.get("password", ""))
        start = time.ticks_ms()
        while not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > _WIFI_TIMEOUT_MS:
                return False
            time.sleep_ms(100)
    return True


def main():
    ident = identity.load(BUNDLE)
    board = ident.board
    led = esp32.Led(board["led"])
    press = esp32.ButtonInput(board["button"])
    battery = esp32.Battery(board["battery"]) if "battery" in board else None
    if not connect_wifi():
        led.show("error")
    addr = socket.getaddrinfo(ident.coap_host, ident.coap_port)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    button = Button(ident, SeqCounter(esp32.FlashStorage(BUNDLE + "/state")),
                    Client(sock, addr), led, battery)
    button.boot()
    while True:
        press.wait_press()
        button.press(0)


main()
