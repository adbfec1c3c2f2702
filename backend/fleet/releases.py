"""Firmware releases: build (mpy-cross), manifest, Ed25519 signature, publish, pause.

The manufacturer's signing key stays with the manufacturer (a file given to
`replenish release publish`); devices hold only its public key, written into their
identity at provisioning. The backend stores and serves the signed manifest and the
files, and cannot forge either: a device verifies the signature and every digest
itself (firmware/replenish/ota.py). Format and reasons: docs/fleet.md.

Signed envelope (CBOR): [manifest: bstr, signature: bstr(64)], where manifest is the
deterministic CBOR map {1: model, 2: version, 3: build, 4: [[path, size, sha256], ...]}
and signature = Ed25519(key, "replenish-fw-v1" || SHA-256(manifest)).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.errors import Conflict, ReplenishError
from backend.fleet import offers as fleet
from backend.storage.models import Batch, DeviceUpdate, Release, ReleaseFile

SIGN_CONTEXT = b"replenish-fw-v1"
# The boot stage (entry points and otaboot) is flashed once and never replaced.
ENTRY_STAGE = frozenset({"main.py", "main_unix.py", "boot.py", "otaboot.py", "manifest.py"})
UPDATABLE_PACKAGES = ("replenish/", "hw/")


class ReleaseError(ReplenishError):
    """A release cannot be published or changed."""


# -- keys --------------------------------------------------------------------------
def generate_key(path: Path) -> str:
    """Write a new private signing key (PEM, owner-only); return the public key hex."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_key_hex(key)


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise ReleaseError(f"cannot read the signing key {path}: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path} is not an Ed25519 private key")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw).hex()


# -- manifest ----------------------------------------------------------------------
def sign_message(manifest: bytes) -> bytes:
    return SIGN_CONTEXT + hashlib.sha256(manifest).digest()


def make_manifest(model: str, version: str, build: int, files: dict[str, bytes]) -> bytes:
    entries = [[path, len(data), hashlib.sha256(data).digest()]
               for path, data in sorted(files.items())]
    return cbor2.dumps({1: model, 2: version, 3: build, 4: entries}, canonical=True)


def sign_manifest(key: Ed25519PrivateKey, manifest: bytes) -> bytes:
    """The signed envelope devices download (GET /fw/<release>)."""
    return cbor2.dumps([manifest, key.sign(sign_message(manifest))], canonical=True)


def verify_envelope(public_key: bytes, envelope: bytes) -> dict:
    """The manifest map, if envelope is signed by public_key (tests, `release status`)."""
    manifest, signature = cbor2.loads(envelope)
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, sign_message(manifest))
    return cbor2.loads(manifest)


# -- build -------------------------------------------------------------------------
def release_sources(firmware_dir: Path, unix: bool = False) -> list[str]:
    """Modules a release replaces: everything under replenish/ and hw/ (the unix
    hardware layer too when the release is for unix-port devices)."""
    from provisioning.firmware_build import UNIX_ONLY, firmware_sources

    found = set(firmware_sources(firmware_dir))
    if unix:
        found |= {rel for rel in UNIX_ONLY if (firmware_dir / rel).exists()}
    return sorted(rel for rel in found
                  if rel.startswith(UPDATABLE_PACKAGES) and rel not in ENTRY_STAGE)


def build_files(firmware_dir: Path, unix: bool = False) -> dict[str, bytes]:
    """{relative .mpy path: bytes}, every module compiled with mpy-cross."""
    from provisioning.firmware_build import BuildError, compile_module

    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        for rel in release_sources(Path(firmware_dir), unix):
            target = Path(tmp) / (rel[:-3] + ".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                compile_module(Path(firmware_dir) / rel, rel, target)
            except BuildError as err:
                raise ReleaseError(f"firmware does not compile: {err}") from err
            files[rel[:-3] + ".mpy"] = target.read_bytes()
    if not files:
        raise ReleaseError(f"no modules under {firmware_dir}/replenish or hw")
    return files


# -- publish and control -----------------------------------------------------------
@dataclass(frozen=True)
class Published:
    id: int
    model: str
    version: str
    build: int
    files: int
    size: int


def publish(session: Session, key: Ed25519PrivateKey, *, model: str, version: str,
            files: dict[str, bytes], build: int | None = None, batch: str | None = None,
            percent: int = 100, max_failures: int = 3, min_battery_mv: int = 2600,
            envelope: bytes | None = None) -> Published:
    """Sign and store a release; it is offered from the next heartbeat on.

    `envelope` replaces the signed manifest as stored (tests of forged releases)."""
    if not 0 <= percent <= 100:
        raise ReleaseError("percent must be 0..100")
    newest = session.scalar(select(func.max(Release.build)).where(Release.model == model))
    build = build if build is not None else (newest or 0) + 1
    if build < 1:
        raise ReleaseError("build numbers start at 1 (0 is the factory firmware)")
    if session.scalars(select(Release).where(Release.model == model,
                                             Release.build == build)).first():
        raise Conflict(f"{model} build {build} exists already")
    batch_id = None
    if batch is not None:
        found = session.scalars(select(Batch).where(Batch.name == batch)).one_or_none()
        if found is None:
            raise ReleaseError(f"no batch {batch!r}")
        if found.model != model:
            raise ReleaseError(f"batch {batch} holds {found.model} devices, not {model}")
        batch_id = found.id
    manifest = make_manifest(model, version, build, files)
    signed = envelope if envelope is not None else sign_manifest(key, manifest)
    release = Release(model=model, version=version, build=build, manifest=signed,
                      manifest_sha256=hashlib.sha256(signed).hexdigest(), batch_id=batch_id,
                      percent=percent, state="active", max_failures=max_failures,
                      min_battery_mv=min_battery_mv, created_by=getpass.getuser())
    session.add(release)
    session.flush()
    for path, data in sorted(files.items()):
        session.add(ReleaseFile(release_id=release.id, path=path, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), content=data))
    session.flush()
    return Published(release.id, model, version, build, len(files),
                     sum(len(d) for d in files.values()))


def get(session: Session, release_id: int) -> Release:
    release = session.get(Release, release_id, with_for_update=True)
    if release is None:
        raise ReleaseError(f"no release {release_id}")
    return release


def pause(session: Session, release_id: int, reason: str = "paused by an operator") -> Release:
    release = get(session, release_id)
    release.state = "paused"
    release.paused_reason = reason
    return release


def resume(session: Session, release_id: int, percent: int | None = None) -> Release:
    """Offer the release again (optionally to a new share of the fleet).

    Devices that rolled it back or refused it are not offered it again."""
    release = get(session, release_id)
    if percent is not None:
        if not 0 <= percent <= 100:
            raise ReleaseError("percent must be 0..100")
        release.percent = percent
    release.state = "active"
    release.paused_reason = None
    return release


def status(session: Session, release_id: int) -> dict:
    release = get(session, release_id)
    counts = dict(session.execute(
        select(DeviceUpdate.state, func.count()).where(DeviceUpdate.release_id == release.id)
        .group_by(DeviceUpdate.state)).all())
    return {"id": release.id, "model": release.model, "version": release.version,
            "build": release.build, "state": release.state, "percent": release.percent,
            "batch_id": release.batch_id, "paused_reason": release.paused_reason,
            "max_failures": release.max_failures, "failures": fleet.failures(session,
                                                                             release.id),
            "devices": {state: counts.get(state, 0) for state in
                        (fleet.OFFERED, fleet.INSTALLED, fleet.ROLLED_BACK, fleet.REFUSED)}}
