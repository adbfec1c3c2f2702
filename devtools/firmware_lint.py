"""`make lint`: type-check the firmware against the MicroPython stubs of every chip a
board profile uses (mypy), one pass per chip; fails on any error.

The per-chip stub packages (micropython-esp32-esp32-generic-stubs, -c3-, -s3-, -c6-:
pyproject's `chip-stubs` extra) all install the same bare module files (esp32.pyi,
machine.pyi, ...) with different contents, so they cannot share one site-packages:
each is installed into its own folder under .venv/chip-stubs/ (`--install` does it,
and a pass installs a missing one). The files a distribution lists are linked into
build/mpy-stubs/<chip> and that folder is the pass's MYPYPATH (mypy neither searches
site-packages for untyped-package modules nor takes it as MYPYPATH);
micropython-stdlib-stubs is the typeshed (builtins as MicroPython has them). The
generic micropython-esp32-stubs in the venv stays what editors see.

    python -m devtools.firmware_lint [--install] [--chip esp32c3] [mypy options]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "hardware" / "boards"
STUBS_OUT = ROOT / "build" / "mpy-stubs"
CHIP_STUBS = Path(sys.prefix) / "chip-stubs"  # one --target folder per stub package
# Unix-port-only files use the unix port's modules (sys.stdin, VfsPosix) that the
# ESP32 stubs do not describe; manifest.py is read by MicroPython's build tool.
EXCLUDE = ("main_unix.py", "hw/unix.py", "manifest.py")
# board profile "mcu" -> the stub package of MicroPython's generic board for that chip
PACKAGES = {
    "esp32": "micropython-esp32-esp32-generic-stubs",
    "esp32c3": "micropython-esp32-esp32-generic-c3-stubs",
    "esp32s3": "micropython-esp32-esp32-generic-s3-stubs",
    "esp32c6": "micropython-esp32-esp32-generic-c6-stubs",
}


def requirements() -> dict[str, str]:
    """{package: requirement} from pyproject's chip-stubs extra (the pinned versions)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for req in project["optional-dependencies"]["chip-stubs"]:
        name = req.split("=")[0].split(">")[0].split("<")[0].strip()
        found[name] = req
    return found


def profile_chips(boards: Path = BOARDS) -> list[str]:
    """The chips the board profiles use, sorted."""
    return sorted({json.loads(p.read_text())["mcu"] for p in boards.glob("*.json")})


def install(package: str) -> Path:
    """The package's own folder under CHIP_STUBS, installed (pip --target) if missing."""
    req = requirements()[package]
    target = CHIP_STUBS / package
    stamp = target / ".requirement"
    if stamp.exists() and stamp.read_text() == req:
        return target
    if target.exists():
        shutil.rmtree(target)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), req], check=True)
    stamp.write_text(req)
    return target


def _dist_files(dist: metadata.Distribution) -> list[str]:
    return [str(entry) for entry in dist.files or () if str(entry).endswith(".pyi")]


def _link(files: list[str], root: Path, out: Path, keep) -> list[str]:
    modules = set()
    for rel in files:
        if not keep(rel):
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(root / rel, target)
        modules.add(rel.split("/")[0].removesuffix(".pyi"))
    return sorted(modules)


def stub_dir(chip: str) -> tuple[Path, list[str]]:
    """A folder holding only `chip`'s stub modules (rebuilt each run) and their names."""
    out = STUBS_OUT / chip
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    target = install(PACKAGES[chip])
    dist = next(metadata.distributions(path=[str(target)]))
    modules = _link(_dist_files(dist), target, out, lambda rel: ".dist-info" not in rel)
    # the private helper package the board stubs import lives in the stdlib stubs
    stdlib = metadata.distribution("micropython-stdlib-stubs")
    modules += _link(_dist_files(stdlib), Path(str(stdlib.locate_file(""))), out,
                     lambda rel: rel.startswith("_mpy_shed/"))
    return out, modules


def config_file(out: Path, stub_modules: list[str]) -> Path:
    """mypy settings: strict enough for the firmware, silent about the stubs' own flaws."""
    path = out / "mypy.ini"
    patterns = ",".join(f"{m},{m}.*" for m in stub_modules)
    path.write_text(
        "[mypy]\ncheck_untyped_defs = True\nwarn_unused_ignores = True\n"
        "warn_redundant_casts = True\nno_implicit_optional = True\n"
        f"\n[mypy-{patterns}]\nignore_errors = True\n")
    return path


def typeshed_dir() -> Path:
    return Path(str(metadata.distribution("micropython-stdlib-stubs").locate_file("")))


def check(chip: str, firmware: Path, mypy_args: list[str]) -> tuple[int, str, int]:
    stubs, stub_modules = stub_dir(chip)
    sources = sorted(p.relative_to(firmware).as_posix() for p in firmware.rglob("*.py")
                     if p.relative_to(firmware).as_posix() not in EXCLUDE)
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(typeshed_dir()),
           "--explicit-package-bases", "--python-version", "3.11",
           "--cache-dir", str(ROOT / "build" / "mypy-cache" / chip),
           "--config-file", str(config_file(stubs, stub_modules)), "--no-error-summary",
           *mypy_args, *sources]
    done = subprocess.run(cmd, cwd=firmware, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr, len(sources)


def main(argv: list[str] | None = None, firmware: Path = FIRMWARE,
         chips: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--install" in args:
        for package in requirements():
            install(package)
        return 0
    if "--chip" in args:
        i = args.index("--chip")
        chips = [args[i + 1]]
        del args[i:i + 2]
    failed = 0
    for chip in chips or profile_chips():
        code, out, count = check(chip, firmware, args)
        sys.stdout.write(out)
        package = PACKAGES[chip]
        version = requirements()[package].split("==")[-1]
        if code == 0:
            print(f"lint: {count} firmware modules type-check against {package} {version}")
        else:
            print(f"lint: FAILED on {chip} ({out.count(': error:')} errors, {package})")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
