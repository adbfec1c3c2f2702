"""Operator pages (role "operator" only): provisioning batches, the fleet with search and
filters, revoking a device (confirmed, with a reason), and firmware rollouts (status,
pause, resume). Households get 404 here and never see the links."""

from __future__ import annotations

import logging
from datetime import date, datetime, time

from flask import Blueprint, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from backend.accounts import devices as device_service
from backend.errors import NotFound, ReplenishError
from backend.fleet import releases as release_service
from backend.storage.models import Batch, Device, Release
from backend.web.pages import (
    INT32_MAX,
    db,
    form_error,
    operator_required,
    paginate,
    whole_number,
    writing,
)

bp = Blueprint("operator", __name__)

log = logging.getLogger(__name__)


@bp.get("/operator/batches")
@operator_required
def batches():
    claimed = func.count(Device.household_id)
    query = (select(Batch, func.count(Device.id), claimed,
                    func.count(Device.revoked_at))
             .outerjoin(Device, Device.batch_id == Batch.id)
             .group_by(Batch.id).order_by(Batch.id.desc()))
    return render_template("operator/batches.html", page=paginate(query, scalars=False))


def _day(name: str) -> date | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise ReplenishError(f"{name.replace('_', ' ')} must be a date like 2026-11-30") from err


def fleet_filters() -> tuple[dict, list]:
    """The fleet filters from the query string, and the conditions they make."""
    args = request.args
    shown = {k: args.get(k, "").strip() for k in
             ("q", "model", "firmware", "seen_before", "seen_after", "battery_below",
              "status", "batch")}
    where = []
    if shown["q"]:  # a serial or a device id, whole or its start
        text = shown["q"].lower()[:64]
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(func.lower(Device.serial).like(pattern, escape="\\")
                     | Device.device_id.like(pattern, escape="\\"))
    if shown["model"]:
        where.append(Device.model == shown["model"])
    if shown["firmware"]:
        where.append(Device.fw_version == shown["firmware"])
    if (before := _day("seen_before")) is not None:  # never seen counts as long ago
        where.append((Device.last_seen_at < datetime.combine(before, time()))
                     | Device.last_seen_at.is_(None))
    if (after := _day("seen_after")) is not None:
        where.append(Device.last_seen_at >= datetime.combine(after, time()))
    if shown["battery_below"]:
        millivolts = whole_number(shown["battery_below"])
        if millivolts is None or millivolts > INT32_MAX:
            raise ReplenishError("battery below must be a whole number of millivolts")
        where.append(Device.battery_mv < millivolts)
    if shown["batch"]:
        batch = whole_number(shown["batch"])
        if batch is None or batch > INT32_MAX:
            raise ReplenishError("batch must be a batch number")
        where.append(Device.batch_id == batch)
    if shown["status"]:
        if shown["status"] not in ("active", "revoked"):
            raise ReplenishError("status must be active or revoked")
        where.append(Device.status == shown["status"])
    return shown, where


@bp.get("/operator/fleet")
@operator_required
def fleet():
    shown, where = fleet_filters()
    page = paginate(select(Device).where(*where).order_by(Device.id))
    models = db().scalars(select(Device.model).distinct().order_by(Device.model)).all()
    firmwares = db().scalars(select(Device.fw_version).where(Device.fw_version.is_not(None))
                             .distinct().order_by(Device.fw_version)).all()
    batch_names = db().execute(select(Batch.id, Batch.name).order_by(Batch.id.desc())).all()
    return render_template("operator/fleet.html", page=page, shown=shown, models=models,
                           firmwares=firmwares, batches=batch_names,
                           revoked=request.args.get("revoked"))


def _device(session, device_id: str) -> Device:
    device = session.scalars(select(Device).where(Device.device_id == device_id)).one_or_none()
    if device is None:
        raise NotFound(f"no device {device_id}")
    return device


@bp.route("/operator/devices/<device_id>/revoke", methods=["GET", "POST"])
@operator_required
def revoke(device_id: str):
    """Revoking is asked for on its own page, with a reason: one click on a list must
    never take a household's device out of service."""
    if request.method == "GET":
        return render_template("operator/revoke.html", device=_device(db(), device_id))
    reason = request.form.get("reason", "").strip()
    if not 3 <= len(reason) <= device_service.REASON_MAX:
        return form_error("operator/revoke.html", ReplenishError(
            f"say why, in 3 to {device_service.REASON_MAX} characters"),
            device=_device(db(), device_id), reason=reason)
    with writing() as s:
        device_service.revoke(s, _device(s, device_id), reason)
    log.warning("operator %d revoked device %s", g.user.id, device_id)
    return redirect(url_for("pages.operator.fleet", revoked=device_id))


# -- firmware rollouts (docs/fleet.md) --------------------------------------------------
@bp.get("/operator/releases")
@operator_required
def releases():
    query = select(Release).order_by(Release.id.desc())
    page = paginate(query)
    statuses = {r.id: release_service.status(db(), r.id) for r in page.items}
    return render_template("operator/releases.html", page=page, statuses=statuses,
                           changed=request.args.get("changed"))


@bp.post("/operator/releases/<int(max=2147483647):release_id>/pause")
@operator_required
def pause_release(release_id: int):
    with writing() as s:
        release_service.pause(s, release_id, f"paused by operator {g.user.email}")
    log.warning("operator %d paused release %d", g.user.id, release_id)
    return redirect(url_for("pages.operator.releases", changed=release_id))


@bp.post("/operator/releases/<int(max=2147483647):release_id>/resume")
@operator_required
def resume_release(release_id: int):
    percent = whole_number(request.form.get("percent"))
    if percent is None or percent > 100:
        raise ReplenishError("the share must be a whole percentage from 0 to 100")
    with writing() as s:
        release_service.resume(s, release_id, percent)
    log.warning("operator %d resumed release %d at %d %%", g.user.id, release_id, percent)
    return redirect(url_for("pages.operator.releases", changed=release_id))
