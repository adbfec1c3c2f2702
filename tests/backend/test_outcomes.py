"""One vocabulary for an event's outcome, from the server's log to the device's LED:
the outcome table of docs/protocol.md, held against the backend's `Result` and the
firmware's LED patterns (the firmware read by the real MicroPython interpreter)."""

from __future__ import annotations

import json
import re

from backend.protocol import Result
from devtools.mpy import ROOT, run_snippet

ROW = re.compile(r"^\| `(\w+)`: .*? \| \*\*(\d\.\d\d) [^|]*\*\* \| (\d+) \|.*\| ([^|]*) \|$", re.M)


def outcome_table() -> list[tuple[str, str, int, list[str]]]:
    """(outcome, dotted code, number, LED patterns named in the row)."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    return [(name, dotted, int(number), re.findall(r"`(\w+)`", led))
            for name, dotted, number, led in ROW.findall(text)]


def test_every_result_is_a_row_with_the_servers_name_for_it():
    rows = outcome_table()
    assert sorted(number for _, _, number, _ in rows) == sorted(int(r) for r in Result)
    for name, dotted, number, _ in rows:
        assert (Result(number).outcome, Result(number).dotted) == (name, dotted)


def test_the_firmware_shows_the_tables_led_patterns(tmp_path):
    printed = run_snippet(
        "import json\nfrom replenish import sender\n"
        "names = [n for n in dir(sender) if n.isupper() and isinstance(getattr(sender, n), str)]\n"
        "print(json.dumps({'patterns': [getattr(sender, n) for n in names],\n"
        "                  'by_code': {str(k): v for k, v in sender._PATTERNS.items()}}))\n",
        tmp_path).stdout
    firmware = json.loads(printed.strip().splitlines()[-1])
    rows = outcome_table()
    for name, _, number, leds in rows:
        assert set(leds) <= set(firmware["patterns"]), (name, leds)
        if str(number) in firmware["by_code"]:  # answers shown as they are
            assert firmware["by_code"][str(number)] == leds[0] == name
    named = {led for *_, leds in rows for led in leds}
    assert named == set(firmware["patterns"]), "a firmware pattern the table does not name"


def test_answer_states_with_their_own_pattern_are_order_states():
    """A row may name an LED pattern for an answer's `state` (2.01 with state
    "awaiting_consent"): that state is one the backend sends, and the pattern has its name."""
    from backend.orders.lifecycle import State

    text = (ROOT / "docs" / "protocol.md").read_text()
    named = re.findall(r'when the answer\'s state is "(\w+)", `(\w+)`', text)
    assert ("awaiting_consent", "awaiting_consent") in named
    for state, pattern in named:
        assert State(state) and pattern == state
