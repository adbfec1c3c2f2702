"""The `replenish` command. Every subcommand reads settings from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from backend import logs
from backend.accounts import devices, households
from backend.config import Settings
from backend.errors import ReplenishError
from backend.fleet.cli import fleet_group, release
from backend.orders.catalogue_cli import catalogue_group
from backend.storage import db


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ReplenishError as err:  # expected failures: one clear line, exit 1
            click.echo(f"error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx, verbose):
    """Replenish: auto-reorder buttons and sensors, CoAP ingest, order worker."""
    ctx.obj = settings = Settings.from_env()
    logs.setup(verbose, settings.log_format)


@main.command()
@click.option("--coap-port", type=int, help="UDP port for CoAP (default 5683).")
@click.option("--http-port", type=int, help="TCP port for the web app (default 8000).")
@click.option("--role", "roles", multiple=True,
              type=click.Choice(["ingest", "web", "worker", "engine"]),
              help="Run only these parts (repeatable; default all three; `engine` is the "
                   "old name of `worker`). See docs/deployment.md.")
@click.option("--ingest-processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="CoAP ingest processes sharing the port (SO_REUSEPORT).")
@click.pass_obj
def run(settings: Settings, coap_port, http_port, roles, ingest_processes):
    """Start the backend: CoAP ingest, order worker (fulfillment) and web app."""
    from backend.runtime import ROLES, serve_forever

    if coap_port is not None:  # 0 = any free port
        settings = settings.with_(coap_port=coap_port)
    if http_port is not None:
        settings = settings.with_(http_port=http_port)
    roles = tuple(dict.fromkeys("worker" if r == "engine" else r for r in roles)) or ROLES
    if ingest_processes > 1 and "ingest" not in roles:
        raise click.UsageError("--ingest-processes needs the ingest role")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(settings, roles, ingest_processes))


@main.group("db")
def db_group():
    """Database schema."""


@db_group.command()
@click.pass_obj
def upgrade(settings: Settings):
    """Apply Alembic migrations up to the newest schema."""
    db.upgrade(settings.db_url)
    db.secure_data(settings)
    click.echo(f"database at newest schema: {_safe_url(settings.db_url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup_command(settings: Settings, out):
    """Write a backup of the database to OUT while the server runs (SQLite: online
    backup; PostgreSQL: pg_dump). The key-encryption key is not in it: keep the KEK
    apart (docs/operations.md)."""
    from backend.storage import backup

    click.echo(backup.backup(settings.db_url, out))


@main.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing SQLite database.")
@click.pass_obj
def restore_command(settings: Settings, source, force):
    """Put the backup SOURCE in place of the database (stop the server first)."""
    from backend.storage import backup

    click.echo(backup.restore(settings.db_url, source, force))


main.add_command(release)
main.add_command(fleet_group)
main.add_command(catalogue_group)


@main.group()
def household():
    """Households."""


@household.command("create")
@click.argument("name")
@click.pass_obj
def household_create(settings: Settings, name):
    """Create a household and print its id and API token (shown once)."""
    with db.transaction(settings.db_url) as session:
        created, token = households.create(session, name, settings.api_token_days)
    # Two lines, as docs/protocol.md promises; the expiry: GET /api/v1/tokens/current.
    click.echo(f"household {created.id}\napi token {token}")


@main.group()
def device():
    """A household's devices."""


@device.command("claim")
@click.argument("claim_code")
@click.option("--household", "household_id", type=int, required=True)
@click.pass_obj
def device_claim(settings: Settings, claim_code, household_id):
    """Claim the device whose label shows CLAIM_CODE."""
    with db.transaction(settings.db_url) as session:
        claimed = devices.claim(session, households.get(session, household_id), claim_code)
    click.echo(f"claimed device {claimed.device_id} ({claimed.serial})")


@device.command("configure")
@click.argument("device_id")
@click.option("--household", "household_id", type=int, required=True)
@click.option("--slot", type=int, default=0, show_default=True)
@click.option("--product", required=True, help="Product SKU from the catalogue.")
@click.option("--quantity", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--kind", type=click.Choice(["button", "sensor"]), default="button",
              show_default=True, help="sensor: order from level reports.")
@click.option("--safety-days", type=click.FloatRange(0, 60), default=2.0, show_default=True,
              help="Sensor safety stock, in days of use.")
@click.option("--min-level", type=click.IntRange(0), help="Sensor: order when the level "
              "falls below this (in the product's unit), even before the forecast has data.")
@click.option("--target-level", type=click.IntRange(1), help="Sensor: order whole packs up "
              "to this level (in the product's unit) instead of --quantity.")
@click.pass_obj
def device_configure(settings: Settings, device_id, household_id, slot, product, quantity,
                     kind, safety_days, min_level, target_level):
    """Choose what a device's slot reorders."""
    with db.transaction(settings.db_url) as session:
        owner = households.get(session, household_id)
        devices.configure_slot(session, devices.owned(session, owner, device_id),
                               slot, product, quantity, kind=kind, safety_days=safety_days,
                               min_level=min_level, target_level=target_level)
    click.echo(f"device {device_id} slot {slot}: {quantity} x {product} ({kind})")


@household.command("settings")
@click.argument("household_id", type=int)
@click.option("--hold-window", "hold_window_s",
              type=click.IntRange(0, households.HOLD_WINDOW_MAX_S),
              help="Seconds a new order waits, cancellable (0: none).")
@click.option("--max-orders-per-day", type=click.IntRange(0, households.ORDERS_PER_DAY_MAX))
@click.option("--monthly-limit-cents", type=click.IntRange(0))
@click.option("--allow-multiple-open/--one-open-order", default=None)
@click.pass_obj
def household_settings(settings: Settings, household_id, **changes):
    """Show or change a household's order policies."""
    with db.transaction(settings.db_url) as session:
        found = households.get(session, household_id)
        for name, value in changes.items():
            if value is not None:
                setattr(found, name, value)
        per_day = found.max_orders_per_day
        monthly = found.monthly_limit_cents
        click.echo(f"household {found.id}: hold window {found.hold_window_s} s, "
                   f"max {'no limit of' if per_day is None else per_day} orders/day, "
                   f"monthly limit {'none' if monthly is None else f'{monthly} cents'}, "
                   f"multiple open orders "
                   f"{'allowed' if found.allow_multiple_open else 'not allowed'}")


@main.group()
def user():
    """Web accounts."""


@user.command("create-operator")
@click.argument("email")
@click.option("--password", envvar="REPLENISH_OPERATOR_PASSWORD", prompt=True,
              hide_input=True, confirmation_prompt=True,
              help="Asked for when not given (or set REPLENISH_OPERATOR_PASSWORD).")
@click.pass_obj
def user_create_operator(settings: Settings, email, password):
    """Create an operator account (batches, fleet, revocation) for EMAIL."""
    from backend.accounts import users as accounts

    with db.transaction(settings.db_url) as session:
        created = accounts.create_operator(session, email, password)
    click.echo(f"operator {created.id} created: {created.email}")


@user.command("reset-password")
@click.argument("email")
@click.option("--password", envvar="REPLENISH_NEW_PASSWORD", prompt="New password",
              hide_input=True, confirmation_prompt=True,
              help="Asked for when not given (or set REPLENISH_NEW_PASSWORD).")
@click.pass_obj
def user_reset_password(settings: Settings, email, password):
    """Set a new password for EMAIL's account: lifts its lockout and revokes its API
    tokens and web sessions (for a user who forgot it, or a stolen one)."""
    from backend.accounts import users as accounts

    with db.transaction(settings.db_url) as session:
        found = accounts.reset_password(session, email, password)
    click.echo(f"user {found.id} ({found.email}): new password set; its tokens and "
               "sessions are revoked")


# Commands installed by other parts of the project (entry points "replenish.commands"):
# the manufacturer's `provision` and `release keygen|publish` (provisioning/cli.py). The
# server never imports them: a server install without the manufacturer extra still runs.
def _add_installed_commands(group: click.Group) -> None:
    for entry in entry_points(group="replenish.commands"):
        try:
            group.add_command(entry.load(), entry.name)
        except ImportError as err:  # the extra is not installed: say so when used
            if entry.name not in group.commands:  # `release` keeps the server's commands
                group.add_command(_missing(entry.name, err), entry.name)


def _missing(name: str, err: ImportError) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True},
                   help="(not installed: pip install 'replenish[manufacturer]')")
    def unavailable():
        raise click.ClickException(f"`replenish {name}` needs the manufacturer tools: "
                                   f"pip install 'replenish[manufacturer]' ({err})")

    return unavailable


_add_installed_commands(main)


if __name__ == "__main__":
    main()
