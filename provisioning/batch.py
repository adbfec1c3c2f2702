"""Provision a batch: N devices, each with a unique id, key and claim code.

Keys go to the database wrapped under the KEK and, in the clear, only into each
device's bundle (the files flashed onto it). The manifest never holds keys.

A batch never destroys one before it: the database keeps only the claim codes' hashes,
so a manifest or label sheet written over is lost for good. An existing non-empty
`out` is refused; the batch is written into a private temporary folder next to it and
renamed into place only when complete (after the database has accepted its rows), so
`out` holds a whole batch or nothing.
"""

from __future__ import annotations

import csv
import getpass
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.accounts import claim_codes
from backend.accounts.keys import Keyring
from backend.errors import Conflict, ReplenishError
from backend.protocol import DEVICE_ID_BYTES, KEY_BYTES
from backend.storage.models import Batch, Device

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

MANIFEST_FIELDS = ("serial", "device_id", "claim_code", "model")
DEFAULT_CLAIM_URL_BASE = "http://127.0.0.1:8000/claim/"


@dataclass(frozen=True)
class Firmware:
    """The firmware a batch's devices get: what they report, and the digest of the
    compiled tree (provisioning/bundle.py `firmware_digest`; None when not built)."""

    version: str
    sha256: str | None = None

    @classmethod
    def from_sources(cls) -> Firmware:
        from provisioning.firmware_build import firmware_version

        return cls(firmware_version())


@dataclass(frozen=True)
class ProvisionedDevice:
    serial: str
    device_id: str
    claim_code: str
    model: str
    bundle_dir: Path
    setup_secret: str = ""


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_bundle(bundle_dir: Path, device_id: str, key: bytes, model: str,
                 coap_host: str, coap_port: int, setup_secret: str | None = None,
                 release_key: str | None = None, firmware_version: str | None = None) -> None:
    """The per-device identity the firmware reads (see firmware/README.md).

    release_key: the manufacturer's Ed25519 public key (hex) that signs firmware
    releases (docs/fleet.md); without it the device refuses every update."""
    bundle_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity = {"device_id": device_id, "key": key.hex(), "model": model,
                "coap_host": coap_host, "coap_port": coap_port,
                "fw": firmware_version or Firmware.from_sources().version,
                "setup_secret": setup_secret or claim_codes.setup_secret()}
    if release_key:
        identity["release_key"] = release_key
    _write_private(bundle_dir / "identity.json", json.dumps(identity, indent=1) + "\n")


def provision_batch(session: Session, keyring: Keyring, *, model: str, count: int,
                    out: Path, coap_host: str, coap_port: int, name: str | None = None,
                    progress=None, board: str | None = None,
                    firmware: Firmware | None = None,
                    claim_url_base: str = DEFAULT_CLAIM_URL_BASE,
                    labels: bool = True,
                    release_key: str | None = None) -> list[ProvisionedDevice]:
    """Create the batch's rows in `session` and its files in `out` (whole, or not at
    all). The caller commits; if that commit fails, `discard(out)` removes the files."""
    name = name or f"{model}-{secrets.token_hex(3)}"
    if not _SAFE_NAME.fullmatch(name):
        raise ReplenishError("batch names use letters, digits, '.', '_' and '-' only "
                             "(they become folder names)")
    if session.scalars(select(Batch).where(Batch.name == name)).first() is not None:
        raise Conflict(f"batch {name!r} exists already; choose another name")
    refuse_existing(out)
    firmware = firmware or Firmware.from_sources()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))  # 0700
    try:
        made = _provision(session, keyring, staging, model=model, count=count, name=name,
                          coap_host=coap_host, coap_port=coap_port, progress=progress,
                          board=board, firmware=firmware, claim_url_base=claim_url_base,
                          labels=labels, release_key=release_key)
        session.flush()  # the database's objections (unique names, ids) before the rename
        refuse_existing(out)  # nobody wrote there meanwhile
        if out.exists():
            out.rmdir()  # empty (checked): the batch takes its place
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    made = [ProvisionedDevice(d.serial, d.device_id, d.claim_code, d.model,
                              out / d.serial, d.setup_secret) for d in made]
    log.info("batch %s: %d %s devices, firmware %s, manifest in %s", name, count, model,
             firmware.version, out)
    return made


def refuse_existing(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} exists and is not empty: a batch never writes over files "
                       "(claim codes are kept only as hashes; overwritten labels are lost "
                       "for good). Choose a new folder")


def discard(out: Path) -> None:
    """Remove a batch folder whose rows were never committed (its keys open nothing)."""
    shutil.rmtree(out, ignore_errors=True)


def _provision(session: Session, keyring: Keyring, out: Path, *, model: str, count: int,
               name: str, coap_host: str, coap_port: int, progress, board: str | None,
               firmware: Firmware, claim_url_base: str, labels: bool,
               release_key: str | None) -> list[ProvisionedDevice]:
    batch = Batch(name=name, model=model, count=count, firmware_version=firmware.version,
                  created_by=getpass.getuser(), board=board, firmware_sha256=firmware.sha256)
    session.add(batch)
    session.flush()
    made: list[ProvisionedDevice] = []
    for number in range(1, count + 1):
        device_id = secrets.token_bytes(DEVICE_ID_BYTES).hex()
        key = secrets.token_bytes(KEY_BYTES)
        code = claim_codes.generate()
        serial = f"{name}-{number:05d}"
        session.add(Device(
            device_id=device_id, serial=serial, model=model, batch_id=batch.id,
            wrapped_key=keyring.wrap(device_id, key),
            claim_code_sha256=claim_codes.code_hash(code),
        ))
        bundle_dir = out / serial
        setup = claim_codes.setup_secret()
        write_bundle(bundle_dir, device_id, key, model, coap_host, coap_port, setup,
                     release_key, firmware.version)
        made.append(ProvisionedDevice(serial, device_id, code, model, bundle_dir, setup))
        if progress:
            progress(1)
    _write_manifest(out, made)
    if labels:
        from provisioning.labels import write_label_sheets

        write_label_sheets(out, made, claim_url_base)
    return made


def _write_manifest(out: Path, devices: list[ProvisionedDevice]) -> None:
    rows = [{f: getattr(d, f) for f in MANIFEST_FIELDS} for d in devices]
    # Claim codes are secrets of the household to come: the manifest is owner-only too.
    with open(os.open(out / "manifest.csv", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    _write_private(out / "manifest.json", json.dumps(rows, indent=1) + "\n")
