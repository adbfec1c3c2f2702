"""docs/protocol.md's key tables (event map, event kinds, answer map) are the backend's
enums and the firmware's constants (read by the real MicroPython interpreter), number
for number and name for name: a device maker builds from the doc alone."""

from __future__ import annotations

import json
import re

from backend.protocol import AnswerKey, EventKey, Kind
from devtools.mpy import ROOT, run_snippet

DOC = ROOT / "docs" / "protocol.md"


def doc_table(header: str) -> dict[int, str]:
    """{number: name} of the table whose header row is `header`."""
    text = DOC.read_text()
    block = text[text.index(header):].split("\n\n")[0]
    return {int(n): name for n, name in re.findall(r"^\|\s*(\d+) \| `(\w+)` \|", block, re.M)}


EVENT_KEYS = "| key | name | type | in kinds | meaning |"
KINDS = "| value | kind | meaning | can create an order |"
ANSWER_KEYS = "| key | name | type | when | meaning |"


def _enum(members) -> dict[int, str]:
    return {int(m): m.name.lower() for m in members}


def test_the_backend_enums_are_the_docs_tables():
    assert doc_table(EVENT_KEYS) == _enum(EventKey)
    assert doc_table(KINDS) == _enum(Kind)
    assert doc_table(ANSWER_KEYS) == _enum(AnswerKey)


def test_the_firmware_constants_are_the_docs_tables(tmp_path):
    printed = run_snippet(
        "import json\nfrom replenish import protocol\n"
        "print(json.dumps({n: getattr(protocol, n) for n in dir(protocol)\n"
        "                  if n[:3] in ('EV_', 'ANS') or n.startswith('KIND_')}))\n",
        tmp_path).stdout
    constants = json.loads(printed.strip().splitlines()[-1])

    def prefixed(prefix: str) -> dict[int, str]:
        return {v: n[len(prefix):].lower() for n, v in constants.items() if n.startswith(prefix)}

    assert prefixed("EV_") == doc_table(EVENT_KEYS)
    assert prefixed("KIND_") == doc_table(KINDS)
    assert prefixed("ANS_") == doc_table(ANSWER_KEYS)
