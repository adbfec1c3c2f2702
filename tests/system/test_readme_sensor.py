"""The README's sensor walkthrough, run as written: its commands against a real backend
(`replenish run`), the real firmware on the MicroPython unix port, and curl.

The commands come out of README.md (the block after `<!-- sensor walkthrough -->`), so
the document cannot drift from what works. Placeholders are filled from what the
earlier commands printed (serial, device id, claim code, token), `localhost:8000` with
the port the backend got; each `# →` line under a command must appear in its output.
The commands run in a scratch folder that links `.venv`, `firmware` and `hardware`, so
`data/` is the test's own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from devtools.system import program

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- sensor walkthrough -->"


def walkthrough(readme: str) -> list[tuple[str, list[str]]]:
    """(command, the output it must print) for each command of the block."""
    block = re.search(re.escape(MARKER) + r"\s*```sh\n(.*?)```", readme, re.S)
    assert block, f"README.md has no code block after {MARKER}"
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("# → "):
            steps[-1][1].append(line[len("# → "):])
        elif line.strip() and not line.startswith("#"):
            steps.append((re.sub(r"\s+#[^'\"]*$", "", line), []))  # a trailing comment
    return steps


def test_the_walkthrough_reads_commands_and_their_output():
    steps = walkthrough(f"{MARKER}\n```sh\na --x 1   # note\n# why\nb 'c'\n# → B\n# → C\n```")
    assert steps == [("a --x 1", []), ("b 'c'", ["B", "C"])]


@pytest.fixture
def running(tmp_path):
    """`replenish run` on a fresh data folder, any free ports: (env, http port)."""
    program("curl", "curl")  # the walkthrough's last commands
    for name in (".venv", "firmware", "hardware"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "REPLENISH_DATA_DIR": str(tmp_path / "data"),
           "REPLENISH_COAP_HOST": "127.0.0.1", "REPLENISH_COAP_PORT": "0",
           "REPLENISH_HTTP_PORT": "0", "REPLENISH_ACK_TIMEOUT_MS": "2000"}
    for name in ("DATABASE_URL", "REPLENISH_KEK", "REPLENISH_KEK_FILE", "REPLENISH_PUBLIC_COAP",
                 "REPLENISH_BATTERY_MV"):
        env.pop(name, None)
    replenish = str(tmp_path / ".venv/bin/replenish")
    subprocess.run([replenish, "db", "upgrade"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=120)
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen([replenish, "run"], cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):  # bounded: up to a minute to start
            text = log.read_text()
            if "web app listening" in text or process.poll() is not None:
                break
            time.sleep(0.1)
        coap = re.search(r"CoAP ingest listening on udp 127\.0\.0\.1:(\d+) ", text)
        http = re.search(r"web app listening on http://127\.0\.0\.1:(\d+)/", text)
        assert coap and http, text
        # The commands see the ports the backend got, as they would see the defaults.
        yield {**env, "REPLENISH_COAP_PORT": coap.group(1),
               "REPLENISH_HTTP_PORT": http.group(1)}, http.group(1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_readme_sensor_walkthrough_runs_as_written(running, tmp_path):
    env, http_port = running
    steps = walkthrough((ROOT / "README.md").read_text())
    assert len(steps) >= 10, steps
    found: dict[str, str] = {}
    for command, expected in steps:
        filled = command.replace("localhost:8000", f"localhost:{http_port}")
        for placeholder, value in found.items():
            filled = filled.replace(placeholder, value)
        assert "<" not in filled.replace("<<", "") and "XXXX" not in filled, \
            f"a placeholder no earlier command printed: {filled}"
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {filled}"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=180)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{filled}\n{output}"
        for line in expected:
            assert line in output, f"{filled}: expected {line!r} in\n{output}"
        if made := re.search(r"^(\S+)\s+([0-9a-f]{16})\s+claim code (\S+)$", done.stdout, re.M):
            found.update({"<serial>": made.group(1), "<device id>": made.group(2),
                          "XXXX-XXXX-XXXX-X": made.group(3)})
        if token := re.search(r"^api token (\S+)$", done.stdout, re.M):
            found["<token>"] = token.group(1)
    assert set(found) == {"<serial>", "<device id>", "XXXX-XXXX-XXXX-X", "<token>"}
