"""Power budget and battery life: measured in simulation where a measurement exists,
from datasheet figures and estimates otherwise.

    python -m hardware.power --board esp32-devkitc-button [--svg out.svg]

Every figure carries its source (`Figure.source`). A board with a file in
hardware/measured/ (written by `make firmware-sim SIM_ARGS=--record`: the shipped
main.py on its simulated chip, time in each power state times the datasheet currents)
uses its charge per press, sleep current and periodic charge; the ones marked
"estimate" are ours, to be replaced by a measurement on silicon (hardware/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from hardware.validate import load_board

ESP32_DS = "Espressif ESP32 Series Datasheet v4.x, Table 'Power Consumption by Power Modes' / 'RF Current Consumption'"
ESP32C3_DS = "Espressif ESP32-C3 Series Datasheet v1.x, Tables 'Current Consumption Depending on RF Modes' / 'in Low-Power Modes'"
ESP32S3_DS = "Espressif ESP32-S3 Series Datasheet v1.x, Tables 'RF Current Consumption' / 'Current Consumption in Low-Power Modes'"
ESP32C6_DS = "Espressif ESP32-C6 Series Datasheet v1.x, Tables 'Wi-Fi Current Consumption' / 'Current Consumption in Low-Power Modes'"
HT7833_DS = "Holtek HT78xx datasheet: quiescent current 4 uA typ."
HX711_DS = "Avia HX711 datasheet: 1.5 mA operating, < 1 uA power-down"
CELL_DS = "Samsung INR18650-35E spec sheet: 3450 mAh nominal (0.2C)"
ESTIMATE = "estimate (MicroPython boot and DHCP/association times; measure on silicon)"


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str


CHIP_FIGURES = {
    "esp32": {
        "deep_sleep_ua": Figure(10, "uA", ESP32_DS + ": Deep-sleep, RTC timer + RTC memory"),
        "cpu_active_ma": Figure(50, "mA", ESP32_DS + ": CPU 240 MHz, 30-68 mA (mid value)"),
        "wifi_rx_ma": Figure(100, "mA", ESP32_DS + ": Rx 802.11b/g/n 95-100 mA"),
        "wifi_tx_ma": Figure(240, "mA", ESP32_DS + ": Tx 802.11b 1 Mbps @19.5 dBm 240 mA"),
    },
    "esp32c3": {
        "deep_sleep_ua": Figure(5, "uA", ESP32C3_DS + ": Deep-sleep 5 uA"),
        "cpu_active_ma": Figure(23, "mA", ESP32C3_DS + ": CPU 160 MHz active, ~23 mA"),
        "wifi_rx_ma": Figure(84, "mA", ESP32C3_DS + ": Rx 802.11b/g/n 82-84 mA"),
        "wifi_tx_ma": Figure(335, "mA", ESP32C3_DS + ": Tx 802.11b 1 Mbps @21 dBm 335 mA"),
    },
    "esp32s3": {
        "deep_sleep_ua": Figure(8, "uA", ESP32S3_DS + ": Deep-sleep, RTC timer + RTC memory 7-8 uA"),
        "cpu_active_ma": Figure(40, "mA", ESP32S3_DS + ": modem-sleep, 160 MHz, both cores ~40 mA"),
        "wifi_rx_ma": Figure(97, "mA", ESP32S3_DS + ": Rx 802.11b/g/n 88-97 mA"),
        "wifi_tx_ma": Figure(340, "mA", ESP32S3_DS + ": Tx 802.11b 1 Mbps @21 dBm ~340 mA"),
    },
    "esp32c6": {
        "deep_sleep_ua": Figure(7, "uA", ESP32C6_DS + ": Deep-sleep 7 uA"),
        "cpu_active_ma": Figure(38, "mA", ESP32C6_DS + ": HP CPU 160 MHz active, up to ~38 mA"),
        "wifi_rx_ma": Figure(78, "mA", ESP32C6_DS + ": Rx 802.11b/g/n/ax ~78 mA"),
        "wifi_tx_ma": Figure(354, "mA", ESP32C6_DS + ": Tx 802.11b 1 Mbps @20 dBm ~354 mA"),
    },
}
REGULATORS = {"ht7833": Figure(4, "uA", HT7833_DS)}
BATTERIES = {"li-ion-18650": Figure(3450, "mAh", CELL_DS)}
HX711_ACTIVE_MA = Figure(1.5, "mA", HX711_DS)
USABLE_FRACTION = Figure(0.8, "", "estimate: 80 % of nominal (cut-off at 3.4 V for the LDO, ageing)")
SELF_DISCHARGE = Figure(2, "%/month", "Battery University BU-802b: Li-ion loses 1.5-2 % per month")

# One press: boot from deep sleep, join Wi-Fi, one CoAP exchange, show the LED.
BOOT_S = Figure(0.6, "s", ESTIMATE)
WIFI_JOIN_S = Figure(1.5, "s", ESTIMATE)
TX_DUTY = Figure(0.1, "", ESTIMATE + ": share of the Wi-Fi time spent transmitting")
COAP_S = Figure(0.2, "s", ESTIMATE + ": one confirmable exchange on a LAN")
LED_S = Figure(0.6, "s", "firmware/hw/esp32.py: the 'ordered' blink, 600 ms")
LED_MA = Figure(5, "mA", "330 ohm series resistor, red LED at 3.3 V")
SENSOR_READ_S = Figure(0.5, "s", ESTIMATE + ": wake, 4 HX711 samples at 10 SPS, sleep")


@dataclass(frozen=True)
class Budget:
    board: str
    sleep_ua: float  # continuous draw while asleep
    press_mas: float  # charge per press (mA*s)
    periodic_mas_per_day: float  # sensor wake-ups and heartbeats without presses
    capacity_mah: float
    self_discharge_mah_per_day: float
    source: str = ESTIMATE  # where the press, sleep and periodic figures come from
    awake_ms_per_press: float | None = None

    def life_days(self, presses_per_day: float) -> float:
        mas_per_day = (self.sleep_ua / 1000 * 86400 + presses_per_day * self.press_mas
                       + self.periodic_mas_per_day + self.self_discharge_mah_per_day * 3600)
        return self.capacity_mah * 3600 / mas_per_day


MEASURED_DIR = Path(__file__).resolve().parent / "measured"


def measured(board: str) -> dict | None:
    """The simulation's figures for `board` (hardware/measured/<board>.json), if any."""
    path = MEASURED_DIR / f"{board}.json"
    return json.loads(path.read_text()) if path.exists() else None


def budget(profile: dict) -> Budget:
    """From the simulation's measurement when there is one, else from estimates."""
    estimated = estimate(profile)
    found = measured(profile["board"])
    if found is None:
        return estimated
    return Budget(profile["board"], found["sleep_ua"], found["mas_per_press"],
                  found["periodic_mas_per_day"], estimated.capacity_mah,
                  estimated.self_discharge_mah_per_day, source=found["source"],
                  awake_ms_per_press=found["awake_ms_per_press"])


def estimate(profile: dict) -> Budget:
    chip = CHIP_FIGURES[profile["mcu"]]
    power = profile.get("power", {})
    regulator = REGULATORS[power.get("regulator", "ht7833")]
    battery = BATTERIES[power.get("battery", "li-ion-18650")]
    divider_ua = 3.7 / power.get("divider_ohm", 2_000_000) * 1e6
    sleep_ua = chip["deep_sleep_ua"].value + regulator.value + divider_ua
    wifi_ma = (chip["wifi_tx_ma"].value * TX_DUTY.value
               + chip["wifi_rx_ma"].value * (1 - TX_DUTY.value))
    press_mas = (BOOT_S.value * chip["cpu_active_ma"].value
                 + (WIFI_JOIN_S.value + COAP_S.value) * wifi_ma
                 + LED_S.value * (chip["cpu_active_ma"].value + LED_MA.value))
    periodic = 0.0
    sensor = profile.get("sensor")
    if sensor:
        wakes = 86400 / sensor.get("wake_interval_s", 600)
        periodic += wakes * SENSOR_READ_S.value * (chip["cpu_active_ma"].value
                                                   + HX711_ACTIVE_MA.value)
        periodic += 86400 / sensor.get("heartbeat_s", 86400) * press_mas
    return Budget(profile["board"], sleep_ua, press_mas, periodic,
                  battery.value * USABLE_FRACTION.value,
                  battery.value * SELF_DISCHARGE.value / 100 * 12 / 365)


PRESS_RATES = (0.1, 0.3, 1, 3, 10, 30, 100)


def table(b: Budget) -> str:
    awake = f"{b.awake_ms_per_press:.0f} ms awake and " if b.awake_ms_per_press else ""
    lines = [f"{b.board}: sleep {b.sleep_ua:.1f} uA, {awake}{b.press_mas:.1f} mA*s per press, "
             f"{b.periodic_mas_per_day:.0f} mA*s/day periodic, {b.capacity_mah:.0f} mAh usable, "
             f"self-discharge {b.self_discharge_mah_per_day:.1f} mAh/day",
             f"  press, sleep and periodic figures: {b.source}",
             "presses/day   battery life"]
    for rate in PRESS_RATES:
        days = b.life_days(rate)
        lines.append(f"{rate:>11g}   {days:8.0f} days ({days / 365:.1f} years)")
    return "\n".join(lines)


def plot_svg(budgets: list[Budget]) -> str:
    """Battery life (years, linear) against presses per day (log scale)."""
    import math

    w, h, left, bottom, top, right = 640, 400, 70, 50, 30, 170
    xs = [10 ** (e / 10) for e in range(-10, 21)]  # 0.1 .. 100
    ymax = max(b.life_days(xs[0]) for b in budgets) / 365
    ymax = math.ceil(ymax)

    def px(rate):
        return left + (math.log10(rate) + 1) / 3 * (w - left - right)

    def py(years):
        return h - bottom - years / ymax * (h - bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18">Battery life vs presses per day</text>']
    for decade in (0.1, 1, 10, 100):
        x = px(decade)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{h - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle">{decade:g}</text>')
    for year in range(0, ymax + 1, max(1, ymax // 8)):
        y = py(year)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{year}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">presses per day</text>')
    out.append(f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" text-anchor="middle">years</text>')
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for i, b in enumerate(budgets):
        points = " ".join(f"{px(r):.1f},{py(b.life_days(r) / 365):.1f}" for r in xs)
        colour = colours[i % len(colours)]
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        out.append(f'<text x="{w - right + 8}" y="{top + 16 + 16 * i}" fill="{colour}">{b.board}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def sources() -> dict[str, str]:
    figures = {f"{chip}.{k}": f for chip, d in CHIP_FIGURES.items() for k, f in d.items()}
    figures.update({f"regulator.{k}": f for k, f in REGULATORS.items()})
    figures.update({f"battery.{k}": f for k, f in BATTERIES.items()})
    for name in ("HX711_ACTIVE_MA", "USABLE_FRACTION", "SELF_DISCHARGE", "BOOT_S", "WIFI_JOIN_S", "TX_DUTY",
                 "COAP_S", "LED_S", "LED_MA", "SENSOR_READ_S"):
        figures[name] = globals()[name]
    return {k: f"{f.value:g} {f.unit}: {f.source}" for k, f in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="battery life from datasheet figures")
    parser.add_argument("--board", action="append", required=True)
    parser.add_argument("--svg", type=Path)
    args = parser.parse_args(argv)
    budgets = [budget(load_board(b)) for b in args.board]
    for b in budgets:
        print(table(b))
    if args.svg:
        args.svg.write_text(plot_svg(budgets))
    print("sources:")
    for name, text in sources().items():
        print(f"  {name} = {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
