"""Provision a batch: N devices, each with a unique id, key and claim code.

Keys go to the database wrapped under the KEK and, in the clear, only into each
device's bundle (the files flashed onto it). The manifest never holds keys.
"""

from __future__ import annotations

import csv
import getpass
import json
import logging
import os
import re
import secrets
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

FIRMWARE_VERSION = "0.1.0"
MANIFEST_FIELDS = ("serial", "device_id", "claim_code", "model")
DEFAULT_CLAIM_URL_BASE = "http://127.0.0.1:8000/claim/"


@dataclass(frozen=True)
class ProvisionedDevice:
    serial: str
    device_id: str
    claim_code: str
    model: str
    bundle_dir: Path
    setup_secret: str = ""

    def claim_url(self, base: str = DEFAULT_CLAIM_URL_BASE) -> str:
        return base + self.claim_code


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_bundle(bundle_dir: Path, device_id: str, key: bytes, model: str,
                 coap_host: str, coap_port: int, setup_secret: str | None = None,
                 release_key: str | None = None) -> None:
    """The per-device identity the firmware reads (see firmware/README.md).

    release_key: the manufacturer's Ed25519 public key (hex) that signs firmware
    releases (docs/fleet.md); without it the device refuses every update."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    identity = {"device_id": device_id, "key": key.hex(), "model": model,
                "coap_host": coap_host, "coap_port": coap_port, "fw": FIRMWARE_VERSION,
                "setup_secret": setup_secret or claim_codes.setup_secret()}
    if release_key:
        identity["release_key"] = release_key
    _write_private(bundle_dir / "identity.json", json.dumps(identity, indent=1) + "\n")


def provision_batch(session: Session, keyring: Keyring, *, model: str, count: int,
                    out: Path, coap_host: str, coap_port: int, name: str | None = None,
                    progress=None, board: str | None = None,
                    firmware_sha256: str | None = None,
                    claim_url_base: str = DEFAULT_CLAIM_URL_BASE,
                    labels: bool = True,
                    release_key: str | None = None) -> list[ProvisionedDevice]:
    name = name or f"{model}-{secrets.token_hex(3)}"
    if not _SAFE_NAME.fullmatch(name):
        raise ReplenishError("batch names use letters, digits, '.', '_' and '-' only "
                             "(they become folder names)")
    if session.scalars(select(Batch).where(Batch.name == name)).first() is not None:
        raise Conflict(f"batch {name!r} exists already; choose another name")
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused batch leaves no trace
    batch = Batch(name=name, model=model, count=count, firmware_version=FIRMWARE_VERSION,
                  created_by=getpass.getuser(), board=board, firmware_sha256=firmware_sha256)
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
                     release_key)
        made.append(ProvisionedDevice(serial, device_id, code, model, bundle_dir, setup))
        if progress:
            progress(1)
    _write_manifest(out, made)
    if labels:
        from provisioning.labels import write_label_sheet

        write_label_sheet(out / "labels.svg", made, claim_url_base)
    log.info("batch %s: %d %s devices, manifest in %s", name, count, model, out)
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
