"""`make lint`: the firmware type-checks against the stubs of every chip a board profile
uses, one pass per chip, and errors fail it."""

import shutil
import subprocess

from devtools import firmware_lint
from devtools.mpy import FIRMWARE, ROOT

ALL = ("esp32-generic-stubs", "esp32-generic-c3-stubs", "esp32-generic-s3-stubs",
       "esp32-generic-c6-stubs")


def copy_with(tmp_path, old, new):
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    esp = copy / "hw" / "esp32.py"
    text = esp.read_text()
    assert old in text
    esp.write_text(text.replace(old, new))
    return copy


def test_firmware_passes_lint_on_every_profile_chip(capsys):
    assert firmware_lint.profile_chips() == ["esp32", "esp32c3", "esp32c6", "esp32s3"]
    assert firmware_lint.main([]) == 0
    out = capsys.readouterr().out
    for package in ALL:
        assert f"type-check against micropython-esp32-{package} 1.29" in out


def test_a_wrong_esp32_call_fails_lint(tmp_path, capsys):
    copy = copy_with(tmp_path, "machine.deepsleep(int(timer_s * 1000))",
                     "machine.deepsleep('soon')")
    assert firmware_lint.main([], firmware=copy, chips=["esp32"]) != 0
    out = capsys.readouterr().out
    assert "hw/esp32.py" in out and "deepsleep" in out and "lint: FAILED on esp32" in out


def test_an_api_one_chip_lacks_fails_on_that_chip_only(tmp_path, capsys):
    # touch wake exists on the ESP32 and S3 (SOC_TOUCH_SENSOR_SUPPORTED), not on C3/C6
    copy = copy_with(tmp_path, "    def sleep(self, timer_s, board):\n",
                     "    def sleep(self, timer_s, board):\n        esp32.wake_on_touch(True)\n")
    assert firmware_lint.main([], firmware=copy) != 0
    out = capsys.readouterr().out
    assert "lint: FAILED on esp32c3" in out and "lint: FAILED on esp32c6" in out
    assert "wake_on_touch" in out
    assert "FAILED on esp32 " not in out and "FAILED on esp32s3" not in out


def test_make_lint_target():
    done = subprocess.run(["make", "-s", "lint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("type-check against") == 4 and "FAILED" not in done.stdout
