"""Wiring diagram (SVG) generated from a board profile: MCU pins on the left, parts right.

    python -m hardware.wiring esp32-devkitc-button > wiring.svg
"""

from __future__ import annotations

import sys
from html import escape

from hardware.validate import load_board


def connections(profile: dict) -> list[tuple[str, str, str]]:
    """(MCU pin, part, how it is wired), in a stable order."""
    out = []
    led = profile["led"]
    polarity = "anode via 330 ohm, cathode to GND" if led.get("active_high", True) \
        else "cathode via 330 ohm, anode to 3V3"
    for key in ("pin", "r_pin", "g_pin", "b_pin"):
        if key in led:
            out.append((f"GPIO{led[key]}", f"LED D1 {key.replace('_pin', '').upper()}", polarity))
    button = profile["button"]
    to = "GND" if button.get("active_low", True) else "3V3"
    wake = ", deep-sleep wake" if button.get("rtc_wake") else ""
    out.append((f"GPIO{button['pin']}", "button SW1", f"other leg to {to}, pull {button.get('pull', 'up')}{wake}"))
    if "battery" in profile:
        b = profile["battery"]
        out.append((f"GPIO{b['adc_pin']}", "battery divider R2/R3",
                    f"VBAT / {b['divider_ratio']:g} (ADC{b.get('adc_unit', 1)}, {b['atten_db']} dB)"))
    if "hx711" in profile:
        h = profile["hx711"]
        out.append((f"GPIO{h['dout_pin']}", "HX711 U3 DOUT", "data from the HX711"))
        out.append((f"GPIO{h['sck_pin']}", "HX711 U3 PD_SCK", f"clock; gain {h['gain']}"))
    if "pulse" in profile:
        out.append((f"GPIO{profile['pulse']['pin']}", "pulse input", "cycle counter"))
    out.append(("3V3", "LDO U2 VOUT", "HT7833 from the cell"))
    out.append(("GND", "common ground", ""))
    return out


def svg(profile: dict) -> str:
    rows = connections(profile)
    row_h, top, w = 40, 60, 720
    h = top + row_h * len(rows) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="13">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="20" y="24" font-size="16">{escape(profile["board"])} '
           f'({escape(profile["mcu"])}, model {escape(profile["model"])})</text>',
           f'<rect x="20" y="{top - 20}" width="150" height="{row_h * len(rows) + 10}" '
           f'fill="#eef" stroke="black"/>',
           f'<text x="30" y="{top - 26}">{escape(profile["mcu"].upper())}</text>']
    for i, (pin, part, how) in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="30" y="{y + 4}">{escape(pin)}</text>')
        out.append(f'<line x1="170" y1="{y}" x2="330" y2="{y}" stroke="black"/>')
        out.append(f'<circle cx="170" cy="{y}" r="3"/>')
        out.append(f'<rect x="330" y="{y - 14}" width="170" height="28" fill="#efe" stroke="black"/>')
        out.append(f'<text x="338" y="{y + 4}">{escape(part)}</text>')
        out.append(f'<text x="510" y="{y + 4}" font-size="11">{escape(how)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    sys.stdout.write(svg(load_board(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
