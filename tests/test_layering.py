"""The layering of docs/architecture.md, held by reading every import (top-level and
inside functions) of the product's code.

- The server (`backend`) never imports manufacturer tooling, developer tools or tests;
  no product code (`backend`, `provisioning`, `hardware`) imports developer tools or tests.
- Transport depends on the domain, never the reverse: the domain folders never import
  `coap` or `web`; `coap` may import `ingest`, `ingest` never `coap`; `web` and `ingest`
  share services and never import each other.
- Every folder of `backend/` is a row of the architecture doc's layer table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("backend", "provisioning", "hardware")
DOMAIN = ("storage", "ingest", "orders", "fleet", "accounts")
TRANSPORT = ("coap", "web")

LAYER_ROW = re.compile(r"^\| `backend/(\w+)/` \|.*\| (.*?) \|$", re.M)


def layer_table(text: str) -> dict[str, set[str]]:
    """{folder: folders it never imports}, from the architecture doc's layer table."""
    rows = {folder: cell for folder, cell in LAYER_ROW.findall(text)}
    return {folder: (set(rows) - {folder} if "any other folder" in cell
                     else set(re.findall(r"`(\w+)`", cell)))
            for folder, cell in rows.items()}


def rules(table: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(importer prefix, forbidden prefix, why)."""
    found = [
        ("backend", "provisioning", "the server never imports manufacturer tooling"),
        *[(package, tool, "product code never imports developer tools or tests")
          for package in PRODUCT for tool in ("devtools", "tests")],
        *[(f"backend.{domain}", f"backend.{transport}", "transport depends on the domain")
          for domain in DOMAIN for transport in TRANSPORT],
        ("backend.web", "backend.ingest", "web and ingest share services, not each other"),
    ]
    for folder, never in table.items():
        found += [(f"backend.{folder}", f"backend.{other}" if other != "provisioning"
                   else other, "docs/architecture.md's layer table") for other in never]
    return found


RULES = rules(layer_table((ROOT / "docs" / "architecture.md").read_text()))


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            # `from backend import web` imports backend.web
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path = ROOT) -> list[str]:
    out = []
    for top in PRODUCT:
        for path in sorted((root / top).rglob("*.py")):
            importer = ".".join(path.relative_to(root).with_suffix("").parts)
            for line, module in imports_of(path, root):
                for source, target, why in RULES:
                    if _within(importer, source) and _within(module, target):
                        out.append(f"{path.relative_to(root)}:{line} imports {module}: {why}")
    return sorted(set(out))


def test_no_forbidden_import():
    assert violations() == []


def test_the_check_sees_a_forbidden_import_inside_a_function(tmp_path):
    planted = tmp_path / "backend" / "ingest" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def f():\n    from backend.coap import server\n"
                       "    from ..web import pages\n    import tests.conftest\n")
    for top in ("provisioning", "hardware"):
        (tmp_path / top).mkdir()
    found = violations(tmp_path)
    assert {v.split(" imports ")[1].split(":")[0] for v in found} == {
        "backend.coap", "backend.coap.server", "backend.web", "backend.web.pages", "tests.conftest"}


def test_every_backend_folder_is_a_row_of_the_layer_table():
    rows = set(layer_table((ROOT / "docs" / "architecture.md").read_text()))
    folders = {p.name for p in (ROOT / "backend").iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert rows == folders


def test_the_readme_layout_lists_every_top_level_folder():
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    folders = {path.split("/")[0] for path in tracked if "/" in path}
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):].split("\n## ")[0]
    listed = set(re.findall(r"^\| `([.\w]+)/` \|", layout, re.M))
    assert listed == folders
