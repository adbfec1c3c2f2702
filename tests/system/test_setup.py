"""The set-up contract: `make run` starts the system; README leads with the two commands."""

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from devtools.net import coap_get

ROOT = Path(__file__).resolve().parents[2]


def test_readme_gives_make_run_and_make_test_first():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make run", "make test"]


def test_ci_runs_make_test_with_ci_true():
    script = (ROOT / ".ci/run").read_text()
    assert "CI=true" in script and "make test" in script
    assert os.access(ROOT / ".ci/run", os.X_OK)


def test_make_run_migrates_and_serves_coap_and_http(tmp_path):
    env = {**os.environ, "REPLENISH_DATA_DIR": str(tmp_path / "data"),
           "REPLENISH_COAP_HOST": "127.0.0.1", "REPLENISH_COAP_PORT": "0",
           "REPLENISH_HTTP_PORT": "0"}  # any free ports: the log says which
    for name in ("DATABASE_URL", "REPLENISH_KEK", "REPLENISH_KEK_FILE", "MAKEFLAGS"):
        env.pop(name, None)
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):  # bounded: up to a minute for install check and start
            text = log.read_text()
            if "web app listening" in text or process.poll() is not None:
                break
            time.sleep(0.1)
        text = log.read_text()
        coap = re.search(r"CoAP ingest listening on udp 127\.0\.0\.1:(\d+) ", text)
        http = re.search(r"web app listening on http://127\.0\.0\.1:(\d+)/", text)
        assert coap and http, text
        coap_port, http_port = int(coap.group(1)), int(http.group(1))
        assert coap_port and http_port
        assert (tmp_path / "data/replenish.db").exists()
        assert (tmp_path / "data/kek.key").stat().st_mode & 0o077 == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as r:
            assert r.status == 200
        core = coap_get(f"coap://127.0.0.1:{coap_port}/.well-known/core")
        assert b'</ev>' in core.payload and b'rt="replenish.event"' in core.payload
        assert "Logging error" not in log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert "backend.runtime: stopped" in log.read_text()  # SIGTERM stops it cleanly
