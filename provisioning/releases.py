"""Firmware releases, the manufacturer's side: build (mpy-cross), manifest, Ed25519
signature, then hand the signed release to the server (backend/fleet/releases.py).

The signing key stays with the manufacturer (a file given to `replenish release
publish`); devices hold only its public key, written into their identity at
provisioning. Format and reasons: docs/fleet.md.

Signed envelope (CBOR): [manifest: bstr, signature: bstr(64)], where manifest is the
deterministic CBOR map {1: model, 2: version, 3: build, 4: [[path, size, sha256], ...]}
and signature = Ed25519(key, "replenish-fw-v1" || SHA-256(manifest)).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from backend.fleet.releases import Published, ReleaseError, next_build, store
from provisioning.firmware_build import UNIX_ONLY, BuildError, compile_module, firmware_sources

SIGN_CONTEXT = b"replenish-fw-v1"
# The boot stage (entry points and otaboot) is flashed once and never replaced.
ENTRY_STAGE = frozenset({"main.py", "main_unix.py", "boot.py", "otaboot.py", "manifest.py"})
UPDATABLE_PACKAGES = ("replenish/", "hw/")


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
    found = set(firmware_sources(firmware_dir))
    if unix:
        found |= {rel for rel in UNIX_ONLY if (firmware_dir / rel).exists()}
    return sorted(rel for rel in found
                  if rel.startswith(UPDATABLE_PACKAGES) and rel not in ENTRY_STAGE)


def build_files(firmware_dir: Path, unix: bool = False) -> dict[str, bytes]:
    """{relative .mpy path: bytes}, every module compiled with mpy-cross."""
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


# -- publish -----------------------------------------------------------------------
def publish(session: Session, key: Ed25519PrivateKey, *, model: str, version: str,
            files: dict[str, bytes], build: int | None = None, batch: str | None = None,
            percent: int = 100, max_failures: int = 3, min_battery_mv: int = 2600,
            envelope: bytes | None = None) -> Published:
    """Sign a release and store it on the server; it is offered from the next heartbeat.

    `envelope` replaces the signed manifest as stored (tests of forged releases)."""
    if not 0 <= percent <= 100:
        raise ReleaseError("percent must be 0..100")
    build = next_build(session, model, build)
    signed = envelope if envelope is not None else sign_manifest(
        key, make_manifest(model, version, build, files))
    return store(session, model=model, version=version, build=build, envelope=signed,
                 files=files, batch=batch, percent=percent, max_failures=max_failures,
                 min_battery_mv=min_battery_mv)
