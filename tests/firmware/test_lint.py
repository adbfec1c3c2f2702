"""`make lint`: the firmware type-checks against micropython-esp32-stubs, and errors fail it."""

import shutil
import subprocess

from devtools import firmware_lint
from devtools.mpy import FIRMWARE, ROOT


def test_firmware_passes_lint(capsys):
    assert firmware_lint.main([]) == 0
    assert "type-check against micropython-esp32-stubs" in capsys.readouterr().out


def test_a_wrong_esp32_call_fails_lint(tmp_path, capsys):
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    esp = copy / "hw" / "esp32.py"
    esp.write_text(esp.read_text().replace("machine.deepsleep(int(timer_s * 1000))",
                                           "machine.deepsleep('soon')"))
    assert firmware_lint.main([], firmware=copy) != 0
    out = capsys.readouterr().out
    assert "hw/esp32.py" in out and "deepsleep" in out and "lint: FAILED" in out


def test_make_lint_target():
    done = subprocess.run(["make", "-s", "lint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "type-check against micropython-esp32-stubs" in done.stdout
