"""One configuration: `Settings` reads every environment variable, and the README's
table is the one `Settings` renders."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

from backend.config import DEFAULTS, Settings, settings_fields, settings_table
from devtools.settings_table import README, readme_table

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def test_the_readme_table_is_the_one_settings_renders():
    assert readme_table(README.read_text()) == settings_table(), (
        "README.md's configuration table is out of date: python -m devtools.settings_table")


def test_every_variable_has_one_field_and_is_read_by_from_env():
    names = [f.metadata["env"] for f in settings_fields()]
    assert len(names) == len(set(names))
    samples = {int: "7", float: "7.5", str: "x"}
    for f in settings_fields():
        default = f.default
        text = samples.get(type(default), "1,2")
        if isinstance(default, bool):
            text = "true"
        if allowed := getattr(f.metadata["parse"], "allowed", None):
            text = next(choice for choice in allowed if choice != default)
        loaded = Settings.from_env({f.metadata["env"]: text})
        value = getattr(loaded.simulator if _in_simulator(f) else loaded, f.name)
        assert value != default, f"{f.metadata['env']} does not reach Settings.{f.name}"


def _in_simulator(f: dataclasses.Field) -> bool:
    return f.name not in {g.name for g in dataclasses.fields(Settings)}


def test_no_other_backend_module_reads_the_environment():
    readers = []
    for path in BACKEND.rglob("*.py"):
        if path.name == "config.py" and path.parent == BACKEND:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                if isinstance(node.ctx, ast.Load) and not _passed_on(node, path):
                    readers.append(f"{path.relative_to(BACKEND)}:{node.lineno}")
    assert readers == []


def _passed_on(node: ast.Attribute, path: Path) -> bool:
    # Handing the whole environment to a child process is not reading a setting.
    line = path.read_text().splitlines()[node.lineno - 1]
    return "env=" in line or "{**os.environ" in line


def test_secrets_stay_out_of_repr():
    loaded = Settings.from_env({"REPLENISH_KEK": "ab" * 32, "REPLENISH_KEK_PREVIOUS": "cd" * 32,
                                "DATABASE_URL": "postgresql://u:hunter22@h/db",
                                "REPLENISH_MERCHANT_SECRET": "merchant-s3cret",
                                "REPLENISH_SECRET_KEY": "web-s3cret"})
    text = repr(loaded)
    for secret in ("ab" * 32, "cd" * 32, "hunter22", "merchant-s3cret", "web-s3cret"):
        assert secret not in text


def test_policies_take_their_defaults_from_settings():
    from backend.coap.ratelimit import RateLimitPolicy
    from backend.coap.server import OverloadPolicy
    from backend.ingest.decide import IngestConfig

    assert IngestConfig().low_battery_mv == DEFAULTS.low_battery_mv
    assert OverloadPolicy().max_waiting == DEFAULTS.overload_max_waiting
    assert OverloadPolicy().retry_after_s == DEFAULTS.overload_retry_s
    limits = RateLimitPolicy()
    assert (limits.source_per_s, limits.device_burst, limits.exempt) == (
        DEFAULTS.rate_source_per_s, DEFAULTS.rate_device_burst, DEFAULTS.rate_exempt)


def test_postgresql_gets_a_second_writer_lane_only_where_a_core_is_free(monkeypatch):
    from backend import config

    assert DEFAULTS.writer_lanes == (2 if (os.cpu_count() or 1) > 2 else 1)
    for cores, lanes in ((None, 1), (1, 1), (2, 1), (3, 2), (16, 2)):
        monkeypatch.setattr(config.os, "cpu_count", lambda cores=cores: cores)
        assert config._lanes_for_this_host() == lanes, f"{cores} cores"
