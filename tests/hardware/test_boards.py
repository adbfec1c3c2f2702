"""Board profiles, pin rules, BOMs, wiring diagrams and the power budget."""

from __future__ import annotations

import copy
import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hardware import power, wiring
from hardware.validate import BOARDS_DIR, all_boards, load_board, validate

HARDWARE = BOARDS_DIR.parent
REQUIRED = {"esp32-devkitc-button", "esp32c3-button", "esp32-loadcell-hx711", "button-v1",
            "esp32s3-button", "esp32c6-button"}
MODULE_PREFIX = {"esp32": "ESP32-WROOM", "esp32c3": "ESP32-C3", "esp32s3": "ESP32-S3",
                 "esp32c6": "ESP32-C6"}


def board(name: str) -> dict:
    return json.loads((BOARDS_DIR / f"{name}.json").read_text())


def test_every_profile_is_valid_and_the_required_boards_exist():
    assert {p.stem for p in all_boards()} >= REQUIRED
    for path in all_boards():
        report = validate(json.loads(path.read_text()), path.stem)
        assert report.ok, (path.name, report.errors)


@pytest.mark.parametrize("name, change, message", [
    ("esp32-devkitc-button", ("button", "pin", 23), "GPIO23 cannot wake the esp32"),
    ("esp32c3-button", ("button", "pin", 7), "GPIO7 cannot wake the esp32c3"),
    ("esp32-devkitc-button", ("led", "pin", 35), "input-only"),
    ("esp32-devkitc-button", ("button", "pin", 36), "no internal pull-up"),
    ("esp32-devkitc-button", ("button", "pin", 0), "strapping pin"),
    ("esp32c3-button", ("button", "pin", 2), "strapping pin"),
    ("esp32-devkitc-button", ("led", "pin", 7), "SPI flash"),
    ("esp32c3-button", ("led", "pin", 14), "SPI flash"),
    ("esp32-devkitc-button", ("battery", "adc_pin", 25), "ADC2, unusable while Wi-Fi"),
    ("esp32c3-button", ("battery", "adc_pin", 5), "ADC2, unusable while Wi-Fi"),
    ("esp32-devkitc-button", ("battery", "adc_pin", 23), "no ADC channel"),
    ("esp32-devkitc-button", ("led", "pin", 24), "does not exist"),
    ("esp32-loadcell-hx711", ("hx711", "sck_pin", 4), "already button.pin"),
    ("esp32-loadcell-hx711", ("hx711", "gain", 100), "hx711.gain"),
    ("esp32-loadcell-hx711", ("hx711", "sck_pin", 23), "GPIO23 cannot hold its level"),
    ("esp32c6-button", ("button", "pin", 9), "strapping pin"),
    ("esp32c6-button", ("button", "pin", 10), "GPIO10 cannot wake the esp32c6"),
    ("esp32c6-button", ("battery", "adc_pin", 7), "no ADC channel"),
    ("esp32s3-button", ("button", "pin", 23), "does not exist"),
    ("esp32s3-button", ("battery", "adc_pin", 11), "ADC2, unusable while Wi-Fi"),
    ("esp32s3-button", ("led", "pin", 30), "SPI flash"),
])
def test_validator_rejects_pin_rule_violations(name, change, message):
    profile = copy.deepcopy(board(name))
    section, key, value = change
    profile[section][key] = value
    report = validate(profile, name)
    assert not report.ok and any(message in e for e in report.errors), report.errors


def test_strapping_pin_for_an_led_is_a_warning_not_an_error():
    report = validate(board("button-v1"), "button-v1")
    assert report.ok and any("GPIO2 is a strapping pin" in w for w in report.warnings)


def test_load_board_refuses_with_every_error(tmp_path):
    profile = board("esp32-devkitc-button")
    profile["button"]["pin"] = 23
    profile["battery"]["adc_pin"] = 26
    path = tmp_path / "esp32-devkitc-button.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(ValueError, match="GPIO23 cannot wake.*GPIO26 is on ADC2"):
        load_board(path)


def test_each_board_has_a_bom_with_part_numbers():
    for path in all_boards():
        profile = json.loads(path.read_text())
        rows = list(csv.DictReader((HARDWARE / profile["bom"]).open()))
        assert rows and all(r["mpn"].strip() and r["manufacturer"].strip() for r in rows)
        module = rows[0]["mpn"]
        assert module.startswith(MODULE_PREFIX[profile["mcu"]])
        if "hx711" in profile:
            assert any(r["mpn"] == "HX711" for r in rows)


def test_wiring_diagram_shows_every_pin_of_the_profile():
    for path in all_boards():
        profile = json.loads(path.read_text())
        root = ET.fromstring(wiring.svg(profile))
        texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
        pins = {profile["led"]["pin"], profile["button"]["pin"], profile["battery"]["adc_pin"]}
        if "hx711" in profile:
            pins |= {profile["hx711"]["dout_pin"], profile["hx711"]["sck_pin"]}
        assert {f"GPIO{p}" for p in pins} <= texts


def test_power_budget_falls_with_presses_and_sensors_cost_more():
    button = power.budget(load_board("esp32-devkitc-button"))
    scale = power.budget(load_board("esp32-loadcell-hx711"))
    lives = [button.life_days(r) for r in power.PRESS_RATES]
    assert lives == sorted(lives, reverse=True) and lives[0] > 365
    assert scale.life_days(1) < button.life_days(1)
    assert power.budget(load_board("esp32c3-button")).sleep_ua < button.sleep_ua
    for text in power.sources().values():
        assert ":" in text and len(text.split(":", 1)[1].strip()) > 10, "every figure cited"
    root = ET.fromstring(power.plot_svg([button, scale]))
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2


def test_power_budget_command_prints_a_table_and_writes_the_plot(tmp_path):
    from tests.backend.test_cli import Cli

    cli = Cli(tmp_path / "data")
    done = cli("provision", "power-budget", "--board", "esp32c3-button", "--svg",
               str(tmp_path / "life.svg"))
    assert "presses/day" in done.stdout and "years" in done.stdout
    ET.parse(tmp_path / "life.svg")
    bad = cli("provision", "wiring", "--board", "no-such-board", "--out",
              str(tmp_path / "w.svg"), ok=False)
    assert bad.returncode == 1 and "no board profile" in bad.stderr
    assert not Path(tmp_path / "w.svg").exists()
