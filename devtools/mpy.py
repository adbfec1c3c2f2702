"""Helpers to run code on the real MicroPython unix port and to compile with mpy-cross."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
VECTORS = ROOT / "docs" / "vectors" / "protocol-v1.json"
TIMEOUT_S = 60


def micropython_binary() -> Path:
    """The micropython executable installed next to this interpreter (the venv's bin)."""
    path = Path(sys.executable).parent / "micropython"
    if not path.exists():
        raise FileNotFoundError(f"micropython not found next to {sys.executable}")
    return path


def mpy_env(micropypath=FIRMWARE, extra=None):
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{micropypath}:.frozen"
    env.update(extra or {})
    return env


def run_script(script, *args, cwd=ROOT, micropypath=FIRMWARE, timeout=TIMEOUT_S,
               stdin=None, env=None, check=True):
    """Run a script file on micropython; return the CompletedProcess (text mode)."""
    result = subprocess.run(
        [str(micropython_binary()), str(script), *map(str, args)],
        cwd=cwd, env=mpy_env(micropypath, env), input=stdin, capture_output=True,
        text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"micropython exited {result.returncode}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}")
    return result


def run_snippet(source, tmp_path, *args, **kwargs):
    """Write source to tmp_path/snippet.py and run it like run_script."""
    script = Path(tmp_path) / "snippet.py"
    script.write_text(source)
    return run_script(script, *args, **kwargs)


def popen_script(script, *args, cwd=ROOT, micropypath=FIRMWARE, env=None):
    """Start a script on micropython with pipes (text, line-buffered) for interactive tests."""
    return subprocess.Popen(
        [str(micropython_binary()), str(script), *map(str, args)],
        cwd=cwd, env=mpy_env(micropypath, env), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )


def mpy_cross(source: Path, output: Path):
    """Compile source to output with the mpy-cross package; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-o", str(output), str(source)],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )
