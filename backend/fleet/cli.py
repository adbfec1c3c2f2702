"""`replenish release ...`: sign, publish and steer firmware rollouts (docs/fleet.md)."""

from __future__ import annotations

from pathlib import Path

import click

from backend.config import Settings
from backend.fleet import releases
from backend.storage.db import transaction
from provisioning.firmware_build import FIRMWARE_DIR


@click.group()
def release():
    """Firmware releases: signed, staged over-the-air updates."""


@release.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the private signing key (PEM, owner-only). Keep it "
              "off the server.")
def keygen(out):
    """Create the manufacturer's Ed25519 release key; prints the public key for
    `replenish provision batch --release-key`."""
    click.echo(f"public key {releases.generate_key(out)}\nprivate key in {out}")


@release.command()
@click.option("--model", required=True)
@click.option("--version", "version", required=True, help="What devices report, e.g. 0.2.0.")
@click.option("--signing-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True)
@click.option("--build", type=click.IntRange(1), help="Build number (default: newest + 1); "
              "devices install only builds newer than the one they run.")
@click.option("--firmware-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=FIRMWARE_DIR, show_default=True)
@click.option("--batch", help="Only devices of this batch.")
@click.option("--percent", type=click.IntRange(0, 100), default=100, show_default=True,
              help="Share of the targeted devices (fixed per device).")
@click.option("--max-failures", type=click.IntRange(1), default=3, show_default=True,
              help="Pause the rollout when this many devices roll back or refuse it.")
@click.option("--min-battery-mv", type=click.IntRange(0), default=2600, show_default=True)
@click.option("--unix", is_flag=True, help="Include the unix-port hardware layer "
              "(fleet simulation on the MicroPython unix port).")
@click.pass_obj
def publish(settings: Settings, model, version, signing_key, build, firmware_dir, batch,
            percent, max_failures, min_battery_mv, unix):
    """Compile, sign and publish a release; it is offered from the next heartbeat."""
    key = releases.load_key(signing_key)
    files = releases.build_files(firmware_dir, unix=unix)
    with transaction(settings.db_url) as session:
        done = releases.publish(session, key, model=model, version=version, files=files,
                                build=build, batch=batch, percent=percent,
                                max_failures=max_failures, min_battery_mv=min_battery_mv)
    click.echo(f"release {done.id}: {done.model} {done.version} build {done.build}, "
               f"{done.files} files, {done.size} bytes, to {percent}% "
               f"{'of batch ' + batch if batch else 'of the fleet'}")


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
