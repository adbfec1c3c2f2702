"""Board profile validator: the ESP32 pin rules, checked before anything is built.

    python -m hardware.validate hardware/boards/*.json

`validate(profile)` returns a `Report` with errors (the profile must not be built)
and warnings (allowed, but worth a look). `load_board(name_or_path)` reads a profile
and raises `ProfileError` if it has errors: `replenish provision bundle` uses it.
Pin facts come from firmware/hw/chips.py (sources cited there), the same table the
ESP32 hardware layer uses, so a profile that validates is one the firmware runs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

BOARDS_DIR = Path(__file__).resolve().parent / "boards"


def _firmware_chips():
    """firmware/hw/chips.py, the table the ESP32 hardware layer runs on: loaded by path
    (the firmware is MicroPython, not a package of this distribution)."""
    path = Path(__file__).resolve().parents[1] / "firmware" / "hw" / "chips.py"
    spec = importlib.util.spec_from_file_location("replenish_firmware_chips", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chips = _firmware_chips()


@dataclass(frozen=True)
class Chip:
    name: str
    gpios: frozenset[int]
    flash: frozenset[int]  # wired to the module's SPI flash: never usable
    strapping: frozenset[int]  # sampled at reset: level decides the boot mode
    input_only: frozenset[int]  # no output driver, no internal pull resistors
    wake: frozenset[int]  # may wake the chip from deep sleep
    adc1: frozenset[int]
    adc2: frozenset[int]  # shares the radio: unusable while Wi-Fi is on
    console: frozenset[int]  # UART0 / USB-serial used by the REPL and flashing
    hold: frozenset[int]  # Pin(hold=True) keeps the level through deep sleep

    @classmethod
    def from_firmware(cls, chip) -> Chip:
        return cls(chip.name, *(frozenset(getattr(chip, key)) for key in (
            "gpios", "flash", "strapping", "input_only", "wake_pins", "adc1", "adc2",
            "console", "hold_pins")))


CHIPS = {name: Chip.from_firmware(chip) for name, chip in chips.CHIPS.items()}
ATTENUATIONS_DB = (0, 2.5, 6, 11)
HX711_GAINS = (32, 64, 128)
SENSOR_KINDS = ("load_cell", "cycle_counter")
PULLS = ("up", "down", "none", "external")


class ProfileError(ValueError):
    """The board profile breaks a rule; the message lists every error."""


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class PinUse:
    role: str  # e.g. "button.pin"
    pin: int
    output: bool
    pull: str = "none"
    wake: bool = False
    analog: bool = False
    hold: bool = False  # its level must survive deep sleep


def _get(section: dict, key: str, kind, report: Report, where: str, required=True):
    value = section.get(key)
    if value is None:
        if required:
            report.errors.append(f"{where}.{key} is missing")
        return None
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        report.errors.append(f"{where}.{key} must be {getattr(kind, '__name__', kind)}")
        return None
    return value


def _pin_uses(profile: dict, report: Report) -> list[PinUse]:
    uses: list[PinUse] = []

    def pin(section: dict, key: str, where: str, **kw) -> None:
        value = _get(section, key, int, report, where)
        if value is not None:
            uses.append(PinUse(f"{where}.{key}", value, **kw))

    led = profile.get("led")
    if not isinstance(led, dict):
        report.errors.append("led is missing")
    elif "pin" in led:
        pin(led, "pin", "led", output=True)
    else:
        for key in ("r_pin", "g_pin", "b_pin"):
            pin(led, key, "led", output=True)

    button = profile.get("button")
    if not isinstance(button, dict):
        report.errors.append("button is missing")
    else:
        pull = button.get("pull", "up")
        if pull not in PULLS:
            report.errors.append(f"button.pull must be one of {', '.join(PULLS)}")
        debounce = _get(button, "debounce_ms", int, report, "button", required=False)
        if debounce is not None and not 0 <= debounce <= 1000:
            report.errors.append("button.debounce_ms must be 0..1000")
        # the firmware always arms the button as a deep-sleep wake source
        pin(button, "pin", "button", output=False, pull=pull, wake=True)

    battery = profile.get("battery")
    if isinstance(battery, dict):
        pin(battery, "adc_pin", "battery", output=False, analog=True)
        if battery.get("atten_db") not in ATTENUATIONS_DB:
            report.errors.append("battery.atten_db must be one of 0, 2.5, 6, 11")
        ratio = battery.get("divider_ratio")
        if not isinstance(ratio, int | float) or isinstance(ratio, bool) or ratio < 1:
            report.errors.append("battery.divider_ratio must be a number >= 1")

    hx711 = profile.get("hx711")
    if hx711 is not None:
        if not isinstance(hx711, dict):
            report.errors.append("hx711 must be an object")
        else:
            pin(hx711, "dout_pin", "hx711", output=False)
            # SCK high keeps the HX711 powered down (~1.5 mA otherwise) while asleep
            pin(hx711, "sck_pin", "hx711", output=True, hold=True)
            if hx711.get("gain") not in HX711_GAINS:
                report.errors.append("hx711.gain must be 32, 64 or 128")

    pulse = profile.get("pulse")
    if pulse is not None:
        if not isinstance(pulse, dict):
            report.errors.append("pulse must be an object")
        else:
            pin(pulse, "pin", "pulse", output=False, wake=True,
                pull="up" if pulse.get("active_low", True) else "none")
    return uses


def _check_pin(chip: Chip, use: PinUse, adc_unit: int | None, report: Report) -> None:
    p, role = use.pin, use.role
    if p not in chip.gpios:
        report.errors.append(f"{role}: GPIO{p} does not exist on the {chip.name}")
        return
    if p in chip.flash:
        report.errors.append(f"{role}: GPIO{p} is wired to the SPI flash")
    if use.output and p in chip.input_only:
        report.errors.append(f"{role}: GPIO{p} is input-only and cannot drive an output")
    if p in chip.input_only and use.pull in ("up", "down"):
        report.errors.append(f"{role}: GPIO{p} has no internal pull-{use.pull}; "
                             "fit an external resistor and set pull to \"external\"")
    if use.hold and p not in chip.hold:
        report.errors.append(f"{role}: GPIO{p} cannot hold its level through deep sleep "
                             f"on the {chip.name} (holding pins: {_ranges(chip.hold)})")
    if use.wake and p not in chip.wake:
        report.errors.append(f"{role}: GPIO{p} cannot wake the {chip.name} from deep "
                             f"sleep (wake-capable: {_ranges(chip.wake)})")
    if p in chip.strapping:
        if use.output:
            report.warnings.append(f"{role}: GPIO{p} is a strapping pin; keep the "
                                   "output circuit from pulling it at reset")
        else:
            report.errors.append(f"{role}: GPIO{p} is a strapping pin; an input held "
                                 "at reset (a pressed button) changes the boot mode")
    if p in chip.console:
        report.warnings.append(f"{role}: GPIO{p} carries the serial console used for "
                               "flashing")
    if use.analog:
        if p in chip.adc2:
            report.errors.append(f"{role}: GPIO{p} is on ADC2, unusable while Wi-Fi is on; "
                                 f"use ADC1 ({_ranges(chip.adc1)})")
        elif p not in chip.adc1:
            report.errors.append(f"{role}: GPIO{p} has no ADC channel")
        elif adc_unit not in (None, 1):
            report.errors.append(f"{role}: GPIO{p} is on ADC1 but adc_unit says {adc_unit}")


def _check_wake_levels(profile: dict, report: Report) -> None:
    """esp32.wake_on_gpio takes one level for all its pins: where the button and the
    pulse line both wake through it, they must be active at the same level."""
    chip = chips.CHIPS[profile["mcu"]]
    button, pulse = profile.get("button"), profile.get("pulse")
    if not isinstance(button, dict) or not isinstance(pulse, dict):
        return
    if chip.button_wake == chip.pulse_wake == chips.WAKE_GPIO and \
            bool(button.get("active_low", True)) != bool(pulse.get("active_low", True)):
        report.errors.append(f"button and pulse wake the {chip.name} through one "
                             "wake_on_gpio level: make both active-low or both active-high")


def _ranges(pins: frozenset[int]) -> str:
    out, ordered = [], sorted(pins)
    start = prev = ordered[0]
    for p in ordered[1:] + [None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ", ".join(out)


def validate(profile: object, name: str | None = None) -> Report:
    report = Report()
    if not isinstance(profile, dict):
        report.errors.append("a board profile is a JSON object")
        return report
    if profile.get("profile") != 1:
        report.errors.append("profile must be 1 (the format version)")
    for key in ("model", "board"):
        if not isinstance(profile.get(key), str) or not profile.get(key):
            report.errors.append(f"{key} must be a non-empty string")
    if name is not None and profile.get("board") != name:
        report.errors.append(f"board is {profile.get('board')!r} but the file is {name!r}")
    chip = CHIPS.get(profile.get("mcu"))
    if chip is None:
        report.errors.append(f"mcu must be one of {', '.join(CHIPS)}")
    uses = _pin_uses(profile, report)
    battery = profile.get("battery")
    adc_unit = battery.get("adc_unit") if isinstance(battery, dict) else None
    if chip is not None:
        for use in uses:
            _check_pin(chip, use, adc_unit, report)
    if chip is not None:
        _check_wake_levels(profile, report)
    seen: dict[int, str] = {}
    for use in uses:
        if use.pin in seen:
            report.errors.append(f"{use.role}: GPIO{use.pin} is already {seen[use.pin]}")
        seen.setdefault(use.pin, use.role)
    sensor = profile.get("sensor")
    if sensor is not None:
        kind = sensor.get("kind") if isinstance(sensor, dict) else None
        if kind not in SENSOR_KINDS:
            report.errors.append(f"sensor.kind must be one of {', '.join(SENSOR_KINDS)}")
        elif kind == "load_cell" and "hx711" not in profile:
            report.errors.append("a load_cell sensor needs an hx711 section")
        elif kind == "cycle_counter" and "pulse" not in profile:
            report.errors.append("a cycle_counter sensor needs a pulse section")
    return report


def board_path(board: str | Path) -> Path:
    path = Path(board)
    if path.suffix == ".json":
        return path
    return BOARDS_DIR / f"{board}.json"


def load_board(board: str | Path) -> dict:
    """A validated profile by board name (hardware/boards/<name>.json) or path."""
    path = board_path(board)
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError as err:
        known = ", ".join(sorted(p.stem for p in BOARDS_DIR.glob("*.json")))
        raise ProfileError(f"no board profile {path} (known boards: {known})") from err
    except json.JSONDecodeError as err:
        raise ProfileError(f"{path}: not valid JSON: {err}") from err
    report = validate(profile, path.stem)
    if not report.ok:
        raise ProfileError(f"{path.name}: " + "; ".join(report.errors))
    return profile


def all_boards() -> list[Path]:
    return sorted(BOARDS_DIR.glob("*.json"))


def main(argv: list[str] | None = None) -> int:
    paths = [Path(a) for a in (argv if argv is not None else sys.argv[1:])] or all_boards()
    failed = 0
    for path in paths:
        report = validate(json.loads(path.read_text()), path.stem)
        for line in report.errors:
            print(f"{path.name}: error: {line}")
        for line in report.warnings:
            print(f"{path.name}: warning: {line}")
        print(f"{path.name}: {'ok' if report.ok else 'INVALID'}")
        failed += not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
