"""`replenish provision ...`: the manufacturer's commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backend.db import transaction
from backend.config import Settings
from backend.keys import load_keyring


@click.group()
def provision():
    """Manufacturer tooling."""


@provision.command()
@click.option("--model", required=True, help="Device model, e.g. button.")
@click.option("--count", type=click.IntRange(1, 100000), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for the manifest and one bundle per device.")
@click.option("--name", help="Batch name (unique); default: model and a random suffix.")
@click.option("--coap-host", default="127.0.0.1", show_default=True,
              help="Server address written into each bundle.")
@click.option("--coap-port", type=int, default=5683, show_default=True)
@click.pass_obj
def batch(settings: Settings, model, count, out, name, coap_host, coap_port):
    """Create COUNT devices with unique ids, keys and claim codes."""
    from provisioning.batch import provision_batch

    keyring = load_keyring(settings, create=True)
    with transaction(settings.db_url) as session, click.progressbar(
            length=count, label="provisioning", file=sys.stderr) as bar:
        made = provision_batch(session, keyring, model=model, count=count, out=out,
                               name=name, coap_host=coap_host, coap_port=coap_port,
                               progress=bar.update)
    click.echo(f"{len(made)} devices; manifest: {out / 'manifest.csv'}")
    for device in made:
        click.echo(f"{device.serial}  {device.device_id}  claim code {device.claim_code}")
