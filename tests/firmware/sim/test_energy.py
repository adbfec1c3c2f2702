"""Charge from simulated time: the states a run reports, times hardware/power.py's
datasheet currents; deep sleep with and without a powered HX711; the cell's curve."""

from devtools.esp32sim import energy
from hardware.power import CHIP_FIGURES, HX711_ACTIVE_MA, LED_MA

BOARD = {"power": {"battery": "li-ion-18650", "regulator": "ht7833", "divider_ohm": 2000000}}


def test_a_run_is_charged_per_state_with_the_datasheet_currents():
    chip = CHIP_FIGURES["esp32c3"]
    out = {"energy": {"boot": 200000, "assoc": 130000, "tx": 1000, "rx": 80000, "idle": 500000},
           "led_on_us": 500000, "hx711_on_us": 1000000}
    expected = (0.2 * chip["cpu_active_ma"].value + 0.13 * chip["wifi_rx_ma"].value
                + 0.001 * chip["wifi_tx_ma"].value + 0.08 * chip["wifi_rx_ma"].value
                + 0.5 * chip["cpu_active_ma"].value + 0.5 * LED_MA.value
                + 1.0 * HX711_ACTIVE_MA.value)
    assert abs(energy.run_mas("esp32c3", out) - expected) < 1e-9


def test_deep_sleep_current_adds_regulator_divider_and_a_powered_hx711():
    base = energy.sleep_ua("esp32", BOARD, cell_mv=3700)
    assert abs(base - (10 + 4 + 1.85)) < 1e-9  # chip, HT7833, 3.7 V over 2 MOhm
    assert energy.sleep_ua("esp32", BOARD, hx711_powered=True, cell_mv=3700) == base + 1500


def test_the_cell_voltage_falls_with_the_charge_used():
    volts = [energy.ocv_mv(soc / 20) for soc in range(21)]
    assert volts == sorted(volts) and volts[0] == 3000 and volts[-1] == 4200


def test_battery_life_counts_sleep_presses_timer_wakes_and_self_discharge():
    days = energy.life_days(BOARD, "esp32", press_mas=60, presses_per_day=10,
                            periodic_mas_per_day=60, sleep_current_ua=15.8)
    per_day = 15.8 / 1000 * 86400 + 600 + 60 + energy.self_discharge_mas_per_day(BOARD)
    assert abs(days - energy.capacity_mas(BOARD) / per_day) < 1e-9
