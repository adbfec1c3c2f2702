"""Operator pages (role "operator" only): provisioning batches, the fleet with filters,
and revoking a device. Households get 404 here and never see the links."""

from __future__ import annotations

import logging
from datetime import date, datetime, time

from flask import g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from backend.accounts import devices as device_service
from backend.errors import NotFound, ReplenishError
from backend.storage.models import Batch, Device
from backend.web.pages import INT32_MAX, bp, db, operator_required, paginate, whole_number, writing

log = logging.getLogger(__name__)


@bp.get("/operator/batches")
@operator_required
def batches():
    claimed = func.count(Device.household_id)
    query = (select(Batch, func.count(Device.id), claimed,
                    func.count(Device.revoked_at))
             .outerjoin(Device, Device.batch_id == Batch.id)
             .group_by(Batch.id).order_by(Batch.id.desc()))
    return render_template("batches.html", page=paginate(query, scalars=False))


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
             ("model", "firmware", "seen_before", "seen_after", "battery_below", "status",
              "batch")}
    where = []
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
    return render_template("fleet.html", page=page, shown=shown, models=models,
                           firmwares=firmwares, revoked=request.args.get("revoked"))


@bp.post("/operator/devices/<device_id>/revoke")
@operator_required
def revoke(device_id: str):
    with writing() as s:
        device = s.scalars(select(Device).where(Device.device_id == device_id)).one_or_none()
        if device is None:
            raise NotFound(f"no device {device_id}")
        device_service.revoke(s, device)
    log.warning("operator %d revoked device %s", g.user.id, device_id)
    return redirect(url_for("pages.fleet", revoked=device_id))
