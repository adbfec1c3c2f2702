"""The files for one device: compiled firmware, board profile, identity; plus bundle.json.

Layout (mirrors the device's flash filesystem; bundle.json stays on the host):

    main.py, replenish/*.mpy, hw/*.mpy   provisioning/firmware_build.py (mpy-cross)
    bundle/board.json                    the validated board profile
    bundle/identity.json                 device id, key, server, setup secret (0600)
    bundle.json                          sha256 of every file above

The same firmware sources and board profile give the same bytes; only identity.json
(and its line in bundle.json) differs between devices.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from backend.errors import ReplenishError
from hardware.validate import ProfileError, load_board
from provisioning.firmware_build import FIRMWARE_DIR, BuildError, build_firmware

MANIFEST = "bundle.json"
DEVICE_DIR = "bundle"
IDENTITY_FIELDS = ("device_id", "key", "model", "coap_host", "coap_port", "fw", "setup_secret")


class BundleError(ReplenishError):
    """A bundle cannot be built, or does not match its bundle.json."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def firmware_digest(files: dict[str, str]) -> str:
    """One digest over the firmware tree (what a batch records)."""
    lines = "".join(f"{rel}:{digest}\n" for rel, digest in sorted(files.items())
                    if not rel.startswith(DEVICE_DIR + "/"))
    return hashlib.sha256(lines.encode()).hexdigest()


def read_identity(path: Path) -> dict:
    try:
        identity = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BundleError(f"cannot read the identity {path}: {err}") from err
    missing = [f for f in IDENTITY_FIELDS if f not in identity]
    if missing:
        raise BundleError(f"{path} lacks {', '.join(missing)} (provision it again?)")
    return identity


def build_bundle(identity_path: Path, board: str | Path, out: Path,
                 firmware_dir: Path = FIRMWARE_DIR) -> dict:
    """Write the bundle for one device into `out` (replaced); returns bundle.json."""
    try:
        profile = load_board(board)
    except ProfileError as err:
        raise BundleError(f"board profile refused: {err}") from err
    identity = read_identity(identity_path)
    if identity["model"] != profile["model"]:
        raise BundleError(f"the identity is for model {identity['model']!r} but board "
                          f"{profile['board']} is a {profile['model']!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        try:
            build_firmware(staging / "fw", firmware_dir)
        except BuildError as err:
            raise BundleError(f"firmware does not compile: {err}") from err
        for path in sorted((staging / "fw").rglob("*")):
            if path.is_file():
                target = staging / "tree" / path.relative_to(staging / "fw")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        device_dir = staging / "tree" / DEVICE_DIR
        device_dir.mkdir(parents=True, exist_ok=True)
        (device_dir / "board.json").write_text(json.dumps(profile, indent=1, sort_keys=True) + "\n")
        fd = os.open(device_dir / "identity.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(identity, indent=1, sort_keys=True) + "\n")
        files = {p.relative_to(staging / "tree").as_posix(): sha256_file(p)
                 for p in sorted((staging / "tree").rglob("*")) if p.is_file()}
        manifest = {"format": 1, "device_id": identity["device_id"], "model": identity["model"],
                    "board": profile["board"], "mcu": profile["mcu"],
                    "firmware_version": identity["fw"], "firmware_sha256": firmware_digest(files),
                    "files": files}
        (staging / "tree" / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        (staging / "tree").rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def read_manifest(bundle_dir: Path) -> dict:
    try:
        manifest = json.loads((Path(bundle_dir) / MANIFEST).read_text())
        files = manifest["files"]
        assert isinstance(files, dict) and files
    except (OSError, ValueError, KeyError, AssertionError) as err:
        raise BundleError(f"{bundle_dir} has no readable {MANIFEST}: not a bundle") from err
    return manifest


def verify_bundle(bundle_dir: Path) -> dict:
    """bundle.json, after checking every file against it (and that nothing was added)."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    files = manifest["files"]
    for rel in files:
        if rel.startswith("/") or ".." in rel.split("/"):
            raise BundleError(f"bundle.json names a path outside the bundle: {rel!r}")
    present = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*")
               if p.is_file()} - {MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(f"bundle refused: files not in {MANIFEST}: {', '.join(extra)}")
    for rel, digest in sorted(files.items()):
        path = bundle_dir / rel
        if not path.is_file():
            raise BundleError(f"bundle refused: {rel} is missing")
        if sha256_file(path) != digest:
            raise BundleError(f"bundle refused: {rel} does not match its sha256 in {MANIFEST} "
                              "(tampered or damaged)")
    if manifest.get("firmware_sha256") != firmware_digest(files):
        raise BundleError(f"bundle refused: firmware_sha256 in {MANIFEST} does not match")
    return manifest
