"""Fleet: status history, update offers, update reports, staged rollouts.

`on_event` runs inside ingest's decision (backend/ingest/decide.py), in the event's
transaction: a heartbeat's status row, its update report and the offer in its answer
commit together with the event, or not at all. Offline devices and low batteries are
noticed where they always were (backend/orders/worker.py, ingest._watch_battery).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.protocol import Kind, OtaReport, WireEvent
from backend.storage.db import utcnow
from backend.storage.models import Device, DeviceStatus, DeviceUpdate, Release

log = logging.getLogger(__name__)

OFFERED = "offered"
INSTALLED = "installed"
ROLLED_BACK = "rolled_back"
REFUSED = "refused"
FAILURES = (ROLLED_BACK, REFUSED)
_REPORT_STATES = {OtaReport.INSTALLED: INSTALLED, OtaReport.ROLLED_BACK: ROLLED_BACK,
                  OtaReport.REFUSED: REFUSED}
_BUCKETS = 10_000


def rollout_bucket(release_id: int, device_id: str) -> int:
    """A device's place in a release's rollout, 0..9999: uniform, fixed per pair.

    Salted with the release so each release starts with different devices, and
    monotonic in the percentage: raising it only adds devices."""
    digest = hashlib.sha256(f"replenish-rollout:{release_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def targets(release: Release, device: Device) -> bool:
    """Is `device` in `release`'s audience (model, batch, percentage)?"""
    if release.model != device.model:
        return False
    if release.batch_id is not None and release.batch_id != device.batch_id:
        return False
    return rollout_bucket(release.id, device.device_id) < release.percent * _BUCKETS // 100


def on_event(session: Session, device: Device, event: WireEvent, *,
             record_status=None, releases=None, now: datetime | None = None) -> int | None:
    """Record a heartbeat and its update report; the release to offer, if any.

    Ingest's group commit passes `record_status` (takes the status row's columns, a
    dict, and inserts the batch's rows at once) and `releases` (model -> the active
    releases, newest first, read once per batch); `now`: the event's time."""
    if event.kind is not Kind.STATUS:
        return None
    row = dict(
        device_pk=device.id, seq=event.seq, received_at=now or utcnow(),
        battery_mv=event.battery_mv, fw_version=event.fw, rssi_dbm=event.rssi,
        queued=event.queued, dropped=event.dropped, wakes=event.wakes, ota=event.ota,
        release_id=event.release)
    if record_status is None:
        session.add(DeviceStatus(**row))
    else:
        record_status(row)
    if event.ota is not None and event.release is not None:
        _report(session, device, event.release, event.ota)
    battery = event.battery_mv if event.battery_mv is not None else device.battery_mv
    return offer(session, device, event.fw or device.fw_version, battery, releases)


def _update_row(session: Session, release_id: int, device_pk: int) -> DeviceUpdate | None:
    return session.scalars(select(DeviceUpdate).where(
        DeviceUpdate.release_id == release_id,
        DeviceUpdate.device_pk == device_pk)).one_or_none()


def _report(session: Session, device: Device, release_id: int, code: int) -> None:
    try:
        state = _REPORT_STATES[OtaReport(code)]
    except ValueError:
        log.warning("device %s: unknown update report %d", device.device_id, code)
        return
    release = session.get(Release, release_id, with_for_update=True)
    if release is None:
        log.warning("device %s reports on unknown release %d", device.device_id, release_id)
        return
    row = _update_row(session, release_id, device.id)
    if row is None:
        row = DeviceUpdate(release_id=release_id, device_pk=device.id, state=state,
                           offers=0, offered_at=utcnow())
        session.add(row)
    elif row.state == state:
        return  # the same report again (a heartbeat sent twice): counted once
    row.state = state
    row.updated_at = utcnow()
    session.flush()
    log.info("device %s: release %d %s", device.device_id, release_id, state)
    if state in FAILURES:
        _pause_if_failing(session, release)


def failures(session: Session, release_id: int) -> int:
    return session.scalar(select(func.count()).select_from(DeviceUpdate).where(
        DeviceUpdate.release_id == release_id, DeviceUpdate.state.in_(FAILURES))) or 0


def _pause_if_failing(session: Session, release: Release) -> None:
    count = failures(session, release.id)
    if release.state == "active" and count >= release.max_failures:
        release.state = "paused"
        release.paused_reason = (f"{count} device(s) rolled back or refused it "
                                 f"(threshold {release.max_failures})")
        log.warning("release %d (%s %s) paused: %s", release.id, release.model,
                    release.version, release.paused_reason)


def active_releases(session: Session, model: str) -> list[Release]:
    """The model's active releases, newest build first."""
    return session.scalars(
        select(Release).where(Release.model == model, Release.state == "active")
        .order_by(Release.build.desc())).all()


def offer(session: Session, device: Device, running: str | None,
          battery_mv: int | None, releases=None) -> int | None:
    """The newest active release for this device that it does not run and has not
    already installed, refused or rolled back; None below the release's safe battery.
    `releases`: model -> `active_releases` (a per-batch cache), else read here."""
    if device.status != "active":
        return None
    # A cached list still holds a release a report paused earlier in the batch.
    candidates = [release for release in (releases or active_releases)(session, device.model)
                  if release.state == "active"]
    if not candidates:
        return None
    newest_installed = session.scalar(
        select(func.max(Release.build)).join(DeviceUpdate, DeviceUpdate.release_id == Release.id)
        .where(DeviceUpdate.device_pk == device.id, DeviceUpdate.state == INSTALLED)) or 0
    for release in candidates:
        if release.build <= newest_installed:
            return None  # the device runs a newer build (and would refuse an older one)
        if not targets(release, device):
            continue
        if release.version == running:
            return None  # already runs the newest release it is meant to have
        row = _update_row(session, release.id, device.id)
        if row is not None and row.state != OFFERED:
            return None  # done with it, one way or the other
        if battery_mv is not None and battery_mv < release.min_battery_mv:
            log.info("device %s: release %d not offered, battery %d mV", device.device_id,
                     release.id, battery_mv)
            return None
        if row is None:
            row = DeviceUpdate(release_id=release.id, device_pk=device.id, state=OFFERED,
                               offers=0, offered_at=utcnow())
            session.add(row)
            session.flush()  # visible to a later heartbeat of this device in the same batch
        row.offers += 1
        row.updated_at = utcnow()
        return release.id
    return None


def _latest_status_ids(device_pks: list[int] | None = None):
    """(device_pk, status_id) of each device's latest heartbeat, as a subquery."""
    query = select(DeviceStatus.device_pk, func.max(DeviceStatus.id).label("status_id"))
    if device_pks is not None:
        query = query.where(DeviceStatus.device_pk.in_(device_pks))
    return query.group_by(DeviceStatus.device_pk).subquery()


def latest_statuses(session: Session, device_pks: list[int]) -> dict[int, DeviceStatus]:
    """Each of these devices' latest heartbeat (devices that sent none are left out)."""
    if not device_pks:
        return {}
    latest = _latest_status_ids(device_pks)
    rows = session.scalars(select(DeviceStatus).join(
        latest, DeviceStatus.id == latest.c.status_id))
    return {row.device_pk: row for row in rows}


def device_rows(session: Session, batch: str | None = None,
                offline_after_s: float | None = None) -> list[dict]:
    """Each device with its latest heartbeat (`replenish fleet status`)."""
    from datetime import timedelta

    from backend.storage.models import Batch

    latest = _latest_status_ids()
    query = (select(Device, DeviceStatus)
             .outerjoin(latest, latest.c.device_pk == Device.id)
             .outerjoin(DeviceStatus, DeviceStatus.id == latest.c.status_id)
             .order_by(Device.serial))
    if batch is not None:
        query = query.join(Batch, Batch.id == Device.batch_id).where(Batch.name == batch)
    silent_since = (utcnow() - timedelta(seconds=offline_after_s)
                    if offline_after_s is not None else None)
    rows = []
    for device, status in session.execute(query).all():
        rows.append({
            "serial": device.serial, "device_id": device.device_id,
            "fw": device.fw_version, "battery_mv": device.battery_mv,
            "rssi_dbm": status.rssi_dbm if status else None,
            "queued": status.queued if status else None,
            "dropped": device.dropped_events, "wakes": status.wakes if status else None,
            "last_seen_at": device.last_seen_at,
            "offline": bool(silent_since and device.last_seen_at
                            and device.last_seen_at < silent_since),
        })
    return rows
