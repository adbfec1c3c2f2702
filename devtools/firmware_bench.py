"""`make bench-firmware`: the firmware's own cost per press, measured on the unix port.

Prints CPU time per press excluding network waits, peak heap during a send
(gc.mem_alloc growth with the collector off), and flash writes per press online and
offline (queue). Figures are from this host's MicroPython unix port; an ESP32 at
240 MHz runs the same bytecode roughly 50-100x slower (docs/firmware.md).

    python -m devtools.firmware_bench [PRESSES]
"""

from __future__ import annotations

import sys

from devtools.mpy import ROOT, run_script

SCRIPT = ROOT / "devtools" / "mpy_scripts" / "bench_press.py"


def measure(presses: int = 320, micropypath=None) -> dict[str, float]:
    kwargs = {"micropypath": micropypath} if micropypath else {}
    done = run_script(SCRIPT, presses, **kwargs)
    figures = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        figures[key] = float(value)
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    presses = int(argv[0]) if argv else 320
    for label, path in (("source (.py)", None), ("compiled (.mpy, make firmware)", "mpy")):
        if path == "mpy":
            from provisioning.firmware_build import build_firmware

            out = ROOT / "build" / "bench-firmware"
            build_firmware(out)
            path = out
        f = measure(presses, path)
        print(f"firmware per press on the MicroPython unix port, {label}, "
              f"{int(f['presses'])} presses:")
        print(f"  CPU time per press (no network waits): {f['firmware_us_per_press']:.0f} us")
        print(f"  peak heap during a send:               {f['peak_heap_bytes_per_send']:.0f} B")
        print(f"  flash writes per press, online:        "
              f"{f['flash_writes_per_press_online']:.4f}")
        print(f"  flash writes per press, offline+flush: "
              f"{f['flash_writes_per_press_offline']:.4f} "
              f"({int(f['offline_presses'])} queued presses; flush: "
              f"{f['flash_writes_per_flush']:.0f} flash writes, head in RTC memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
