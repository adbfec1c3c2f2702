"""`make firmware`: a deterministic deployable tree built with mpy-cross, loadable by MicroPython."""

import hashlib
import subprocess
import sys

from devtools.mpy import FIRMWARE, ROOT, run_snippet
from provisioning.firmware_build import build_firmware, firmware_sources


def test_build_is_deterministic_and_complete(tmp_path):
    first = build_firmware(tmp_path / "a")
    second = build_firmware(tmp_path / "b")
    assert first == second  # same inputs, same bytes
    assert list(first) == sorted(first)
    assert "main.py" in first and "main_unix.py" not in first and "hw/unix.mpy" not in first
    modules = {rel[:-3] for rel in firmware_sources() if rel not in ("main.py", "boot.py")}
    assert {rel[:-4] for rel in first if rel.endswith(".mpy")} == modules
    for rel, digest in first.items():
        data = (tmp_path / "a" / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        if rel.endswith(".mpy"):
            assert data[:1] == b"M"
    assert "/tmp" not in (tmp_path / "a" / "replenish" / "counter.mpy").read_bytes().decode(
        "latin-1")  # no absolute build path embedded


def test_a_broken_module_fails_the_build_and_leaves_no_tree(tmp_path):
    src = tmp_path / "fw"
    (src / "replenish").mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    (src / "replenish" / "bad.py").write_text("def f(:\n")
    done = subprocess.run([sys.executable, "-m", "provisioning.firmware_build",
                           str(tmp_path / "out"), "--firmware-dir", str(src)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and "replenish/bad.py" in done.stderr
    assert not (tmp_path / "out").exists()


def test_compiled_core_runs_on_micropython(tmp_path):
    build_firmware(tmp_path / "tree")
    result = run_snippet(r"""
import replenish.counter, replenish.queue, replenish.setup, replenish.cbor
print(replenish.counter.__file__, replenish.cbor.encode({1: 2}))
""", tmp_path, micropypath=tmp_path / "tree")
    assert result.stdout.startswith("replenish/counter.mpy") or "counter.mpy" in result.stdout
    assert "b'\\xa1\\x01\\x02'" in result.stdout


def test_make_firmware_target(tmp_path):
    done = subprocess.run(["make", "-s", "firmware", f"FIRMWARE_OUT={tmp_path / 'fw'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "fw" / "replenish" / "button.mpy").exists()
    assert "files," in done.stdout
    assert FIRMWARE.exists()
