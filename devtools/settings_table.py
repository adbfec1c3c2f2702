"""Write the README's configuration table from `backend.config.Settings`.

    python -m devtools.settings_table        # rewrites README.md between the markers

tests/backend/test_config.py fails when the README and Settings disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from backend.config import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- settings table: python -m devtools.settings_table -->"
END = "<!-- end of settings table -->"
_BLOCK = re.compile(re.escape(START) + r"\n(.*?)" + re.escape(END), re.S)


def readme_table(text: str) -> str:
    found = _BLOCK.search(text)
    if not found:
        raise SystemExit(f"README.md has no {START!r} … {END!r} block")
    return found.group(1)


def main() -> int:
    text = README.read_text()
    readme_table(text)  # the markers must be there
    README.write_text(_BLOCK.sub(lambda _: f"{START}\n{settings_table()}{END}", text))
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
