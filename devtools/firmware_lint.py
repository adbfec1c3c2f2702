"""`make lint`: type-check the firmware against micropython-esp32-stubs with mypy.

The stub package installs bare `.pyi` modules (machine, network, esp32, time, ...)
into site-packages, which mypy does not search for untyped-package modules and
refuses as MYPYPATH. So the files the distribution lists are linked into
build/mpy-stubs and that folder is the MYPYPATH; micropython-stdlib-stubs is the
typeshed (builtins as MicroPython has them). Exit status: mypy's (non-zero on errors).

    python -m devtools.firmware_lint [mypy options]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
STUBS_OUT = ROOT / "build" / "mpy-stubs"
# Unix-port-only files use the unix port's modules (sys.stdin, VfsPosix) that the
# ESP32 stubs do not describe; manifest.py is read by MicroPython's build tool.
EXCLUDE = ("main_unix.py", "hw/unix.py", "hw/sim.py", "manifest.py")


def _dist_root(name: str) -> tuple[metadata.Distribution, Path]:
    dist = metadata.distribution(name)
    return dist, Path(str(dist.locate_file("")))


def _link_stubs(dist_name: str, keep) -> list[str]:
    dist, root = _dist_root(dist_name)
    modules = set()
    for entry in dist.files or ():
        rel = str(entry)
        if not rel.endswith(".pyi") or not keep(rel):
            continue
        target = STUBS_OUT / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(root / rel, target)
        modules.add(rel.split("/")[0].removesuffix(".pyi"))
    return sorted(modules)


def stub_dir() -> tuple[Path, list[str]]:
    """A folder holding only the stub modules (rebuilt each run) and their names."""
    if STUBS_OUT.exists():
        shutil.rmtree(STUBS_OUT)
    modules = _link_stubs("micropython-esp32-stubs", lambda rel: ".dist-info" not in rel)
    # the private helper package the board stubs import lives in the stdlib stubs
    modules += _link_stubs("micropython-stdlib-stubs",
                           lambda rel: rel.startswith("_mpy_shed/"))
    return STUBS_OUT, modules


def config_file(stub_modules: list[str]) -> Path:
    """mypy settings: strict enough for the firmware, silent about the stubs' own flaws."""
    path = STUBS_OUT / "mypy.ini"
    patterns = ",".join(f"{m},{m}.*" for m in stub_modules)
    path.write_text(
        "[mypy]\ncheck_untyped_defs = True\nwarn_unused_ignores = True\n"
        "warn_redundant_casts = True\nno_implicit_optional = True\n"
        f"\n[mypy-{patterns}]\nignore_errors = True\n")
    return path


def typeshed_dir() -> Path:
    _, root = _dist_root("micropython-stdlib-stubs")
    return root  # holds stdlib/ (with VERSIONS) as a typeshed does


def main(argv: list[str] | None = None, firmware: Path = FIRMWARE) -> int:
    stubs, stub_modules = stub_dir()
    sources = sorted(p.relative_to(firmware).as_posix() for p in firmware.rglob("*.py")
                     if p.relative_to(firmware).as_posix() not in EXCLUDE)
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(typeshed_dir()),
           "--explicit-package-bases", "--python-version", "3.11",
           "--cache-dir", str(ROOT / "build" / "mypy-cache"),
           "--config-file", str(config_file(stub_modules)), "--no-error-summary",
           *(argv if argv is not None else sys.argv[1:]), *sources]
    done = subprocess.run(cmd, cwd=firmware, env=env, capture_output=True, text=True)
    out = done.stdout + done.stderr
    sys.stdout.write(out)
    if done.returncode == 0:
        print(f"lint: {len(sources)} firmware modules type-check against "
              f"micropython-esp32-stubs {metadata.version('micropython-esp32-stubs')}")
    else:
        print(f"lint: FAILED ({out.count(': error:')} errors)")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
