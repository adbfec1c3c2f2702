"""Flash one device: MicroPython image with esptool, bundle with mpremote, read back.

1. The bundle is checked against its bundle.json first: a tampered bundle is refused
   before anything touches the device.
2. With `image`, esptool writes it (`write-flash` at 0x1000 on the ESP32, 0x0 on the
   ESP32-C3). This step needs silicon: esptool talks to the chip's ROM bootloader.
3. mpremote creates the folders and copies every file (`fs cp`), then runs a script on
   the device that prints the sha256 of each file; every digest must match.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from provisioning.bundle import BundleError, verify_bundle

FLASH_OFFSETS = {"esp32": "0x1000", "esp32c3": "0x0"}
_TIMEOUT_S = 300
_MARK = "SHA256 "

_READBACK = """\
import hashlib, binascii
for p in {paths!r}:
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    print('{mark}' + p + ' ' + binascii.hexlify(h.digest()).decode())
"""

_MKDIRS = """\
import os
for d in {dirs!r}:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""


class FlashError(BundleError):
    """A flashing step failed; the message says which."""


@dataclass(frozen=True)
class FlashResult:
    device_id: str
    firmware_version: str
    files: int
    image_written: bool


def esptool_command(port: str, chip: str, image: Path, baud: int = 460800) -> list[str]:
    if chip not in FLASH_OFFSETS:
        raise FlashError(f"unknown chip {chip!r} (esptool knows {', '.join(FLASH_OFFSETS)})")
    return [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud",
            str(baud), "write-flash", "-z", FLASH_OFFSETS[chip], str(image)]


def mpremote_base(port: str) -> list[str]:
    # `resume`: no soft reset (it would end the unix port; on a board it is not needed).
    return [sys.executable, "-m", "mpremote", "connect", port, "resume"]


def _run(cmd: list[str], what: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0:
        raise FlashError(f"{what} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def copy_bundle(port: str, bundle_dir: Path, files: list[str]) -> None:
    dirs = sorted({"/".join(rel.split("/")[:i]) for rel in files
                   for i in range(1, rel.count("/") + 1)}, key=lambda d: (d.count("/"), d))
    cmd = mpremote_base(port) + ["exec", _MKDIRS.format(dirs=dirs)]
    for rel in files:
        cmd += ["+", "fs", "cp", str(bundle_dir / rel), ":" + rel]
    _run(cmd, "mpremote copy")


def read_back(port: str, files: list[str]) -> dict[str, str]:
    out = _run(mpremote_base(port) + ["exec", _READBACK.format(paths=files, mark=_MARK)],
               "mpremote read-back")
    found = {}
    for line in out.splitlines():
        if line.startswith(_MARK):
            path, _, digest = line[len(_MARK):].strip().rpartition(" ")
            found[path] = digest
    return found


def flash(port: str, bundle_dir: Path, image: Path | None = None, baud: int = 460800,
          progress=None) -> FlashResult:
    manifest = verify_bundle(bundle_dir)
    files = sorted(manifest["files"])
    if image is not None:
        if not Path(image).is_file():
            raise FlashError(f"no MicroPython image at {image}")
        _run(esptool_command(port, manifest["mcu"], image, baud), "esptool write-flash")
    if progress:
        progress("image")
    copy_bundle(port, bundle_dir, files)
    if progress:
        progress("copy")
    found = read_back(port, files)
    wrong = [rel for rel in files if found.get(rel) != manifest["files"][rel]]
    if wrong:
        raise FlashError(f"read-back differs for {len(wrong)} files: {', '.join(wrong[:5])}")
    if progress:
        progress("verify")
    identity = json.loads((bundle_dir / "bundle" / "identity.json").read_text())
    return FlashResult(manifest["device_id"], identity["fw"], len(files), image is not None)
