"""The files a device maker meets (identity.json, manifest.json, `household create`'s
output) are as docs/protocol.md's tables say, field for field."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from provisioning.batch import MANIFEST_FIELDS, write_bundle
from tests.backend.test_cli import Cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _table(heading_text: str) -> dict[str, str]:
    """{field: type} of the table that follows the paragraph naming `heading_text`."""
    text = DOC.read_text()
    start = text.index(heading_text)
    block = text[start:].split("\n\n")[1]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", block, re.M))


def test_identity_json_has_the_documented_fields(tmp_path):
    documented = _table("`identity.json`, one per device")
    write_bundle(tmp_path, "0102030405060708", secrets.token_bytes(32), "button",
                 "192.0.2.1", 5683, release_key="ab" * 32)
    identity = json.loads((tmp_path / "identity.json").read_text())
    assert set(identity) == set(documented)
    for field, kind in documented.items():
        value = identity[field]
        assert isinstance(value, int if kind.startswith("integer") else str), field
        if "hex digits" in kind:
            digits = int(re.search(r"(\d+) lowercase hex", kind).group(1))
            assert re.fullmatch(f"[0-9a-f]{{{digits}}}", value), field


def test_manifest_rows_have_the_documented_fields():
    assert tuple(_table("`manifest.json` (and the same rows")) == MANIFEST_FIELDS


def test_household_create_prints_what_the_doc_shows(tmp_path):
    cli = Cli(tmp_path / "data")
    cli("db", "upgrade")
    printed = cli("household", "create", "Doc household").stdout
    assert re.fullmatch(r"household \d+\napi token rp_[A-Za-z0-9_-]{43}\n", printed)
    block = DOC.read_text().split("`replenish household create NAME` prints")[1]
    assert "household <id, decimal>\napi token rp_<43 URL-safe base64 characters>" in block
