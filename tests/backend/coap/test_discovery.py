"""/.well-known/core: the link format for this host, an empty 4.03 for everyone else.

Its answer is bigger than the GET asking for it, so it is kept from sources outside
REPLENISH_DISCOVERY_FROM (default loopback): a forged-source GET must not be
amplified. Tests stay on loopback, so the refusal is shown by allowing nobody.
"""

import logging
import re
from pathlib import Path

import aiocoap

from devtools.net import coap_get
from tests.conftest import BackendThread


def test_loopback_gets_the_link_format(settings):
    with BackendThread(settings) as backend:
        answer = coap_get(f"coap://127.0.0.1:{backend.coap_port}/.well-known/core")
    assert answer.code == aiocoap.Code.CONTENT
    # The link as docs/protocol.md shows it to device makers, attribute for attribute.
    doc = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    documented = re.search(r"`(</ev>[^`]*)`", doc).group(1)
    assert documented in answer.payload.decode().split(",")


def test_outside_the_allowed_networks_the_answer_is_an_empty_4_03(settings, caplog):
    with BackendThread(settings.with_(discovery_from=())) as backend, \
            caplog.at_level(logging.INFO, logger="backend"):
        answer = coap_get(f"coap://127.0.0.1:{backend.coap_port}/.well-known/core")
    assert answer.code == aiocoap.Code.FORBIDDEN
    assert answer.payload == b""
    # Header and token only: smaller than the GET (header, token, two Uri-Path options).
    assert len(answer.opt.encode()) == 0
    assert "refused /.well-known/core" in caplog.text
