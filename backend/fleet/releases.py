"""Firmware releases on the server: store a signed release, pause, resume, status.

Releases are built and signed by the manufacturer's tooling (provisioning/releases.py,
`replenish release publish`), with a key the server never sees; devices hold only its
public key, written into their identity at provisioning. The server stores and serves
the signed manifest and the files, and cannot forge either: a device verifies the
signature and every digest itself (firmware/replenish/ota.py). Format: docs/fleet.md.
"""

from __future__ import annotations

import getpass
import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.errors import Conflict, ReplenishError
from backend.fleet import offers as fleet
from backend.storage.models import Batch, DeviceUpdate, Release, ReleaseFile


class ReleaseError(ReplenishError):
    """A release cannot be published or changed."""


@dataclass(frozen=True)
class Published:
    id: int
    model: str
    version: str
    build: int
    files: int
    size: int


def next_build(session: Session, model: str, build: int | None = None) -> int:
    """The build number a new release of `model` gets (the newest + 1 unless given)."""
    newest = session.scalar(select(func.max(Release.build)).where(Release.model == model))
    build = build if build is not None else (newest or 0) + 1
    if build < 1:
        raise ReleaseError("build numbers start at 1 (0 is the factory firmware)")
    if session.scalars(select(Release).where(Release.model == model,
                                             Release.build == build)).first():
        raise Conflict(f"{model} build {build} exists already")
    return build


def store(session: Session, *, model: str, version: str, build: int, envelope: bytes,
          files: dict[str, bytes], batch: str | None = None, percent: int = 100,
          max_failures: int = 3, min_battery_mv: int = 2600) -> Published:
    """Store a signed release; it is offered from the next heartbeat on."""
    if not 0 <= percent <= 100:
        raise ReleaseError("percent must be 0..100")
    batch_id = None
    if batch is not None:
        found = session.scalars(select(Batch).where(Batch.name == batch)).one_or_none()
        if found is None:
            raise ReleaseError(f"no batch {batch!r}")
        if found.model != model:
            raise ReleaseError(f"batch {batch} holds {found.model} devices, not {model}")
        batch_id = found.id
    release = Release(model=model, version=version, build=build, manifest=envelope,
                      manifest_sha256=hashlib.sha256(envelope).hexdigest(), batch_id=batch_id,
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
