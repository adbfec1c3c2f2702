"""`replenish release pause|resume|status` and `replenish fleet`: steer rollouts and see
the devices (docs/fleet.md). Building and signing a release is the manufacturer's
(`replenish release keygen|publish`, provisioning/cli.py)."""

from __future__ import annotations

import click

from backend.config import Settings
from backend.fleet import releases
from backend.storage.db import transaction


@click.group()
def release():
    """Firmware releases: signed, staged over-the-air updates."""


@release.command()
@click.argument("release_id", type=int)
@click.pass_obj
def pause(settings: Settings, release_id):
    """Stop offering RELEASE_ID (devices already updated keep it)."""
    with transaction(settings.db_url) as session:
        releases.pause(session, release_id)
    click.echo(f"release {release_id} paused")


@release.command()
@click.argument("release_id", type=int)
@click.option("--percent", type=click.IntRange(0, 100), help="New share of the fleet.")
@click.pass_obj
def resume(settings: Settings, release_id, percent):
    """Offer RELEASE_ID again (optionally to a new share)."""
    with transaction(settings.db_url) as session:
        found = releases.resume(session, release_id, percent)
        share = found.percent
    click.echo(f"release {release_id} active, {share}%")


@release.command()
@click.argument("release_id", type=int)
@click.pass_obj
def status(settings: Settings, release_id):
    """State of a rollout: share, pause reason, devices per outcome."""
    with transaction(settings.db_url) as session:
        s = releases.status(session, release_id)
    devices = ", ".join(f"{n} {state}" for state, n in s["devices"].items())
    click.echo(f"release {s['id']}: {s['model']} {s['version']} build {s['build']}, "
               f"{s['state']}, {s['percent']}%"
               + (f" of batch {s['batch_id']}" if s["batch_id"] else "")
               + f"; devices: {devices}; failures {s['failures']}/{s['max_failures']}"
               + (f"; paused: {s['paused_reason']}" if s["paused_reason"] else ""))


@click.group("fleet")
def fleet_group():
    """The devices in the field: last seen, battery, signal, firmware."""


@fleet_group.command("status")
@click.option("--batch", help="Only this batch.")
@click.option("--devices", "per_device", is_flag=True, help="One line per device.")
@click.pass_obj
def fleet_status(settings: Settings, batch, per_device):
    """Firmware versions, offline and low-battery devices, from their heartbeats."""
    from collections import Counter

    from backend.fleet import offers as fleet

    with transaction(settings.db_url) as session:
        rows = fleet.device_rows(session, batch, settings.offline_after_s)
    versions = Counter(r["fw"] or "unknown" for r in rows)
    low = sum(1 for r in rows if r["battery_mv"] is not None
              and r["battery_mv"] < settings.low_battery_mv)
    click.echo(f"{len(rows)} devices; firmware "
               + (", ".join(f"{v} x{n}" for v, n in sorted(versions.items())) or "none")
               + f"; offline {sum(r['offline'] for r in rows)}; low battery {low}")
    if per_device:
        for r in rows:
            seen = f"{r['last_seen_at']:%Y-%m-%d %H:%M}" if r["last_seen_at"] else "never"
            click.echo(f"{r['serial']}  {r['device_id']}  fw {r['fw'] or '-'}  "
                       f"{r['battery_mv'] or '-'} mV  {r['rssi_dbm'] or '-'} dBm  "
                       f"queued {_dash(r['queued'])}  dropped {_dash(r['dropped'])}  "
                       f"wakes {_dash(r['wakes'])}  seen {seen}"
                       + ("  OFFLINE" if r["offline"] else ""))


def _dash(value) -> str:
    return "-" if value is None else str(value)
