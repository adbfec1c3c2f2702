"""Mark mutants that cannot change behaviour by construction as skipped in a cosmic-ray
session (as `cr-filter-pragma` does), so `make mutate` neither runs nor counts them.

Today one kind: mutants inside a type annotation of a module that has
`from __future__ import annotations`. There annotations are stored as strings and never
evaluated (`Order | None` → `Order + None` is just another string), so no test can
tell the mutant apart. Without the future import function annotations are evaluated at
definition time, and such mutants are run like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ANNOTATION = "annotation"  # the skipped result's output: why it was skipped

Span = tuple[tuple[int, int], tuple[int, int]]  # ((line, column), (end line, end column))


def annotation_spans(source: str) -> list[Span]:
    """Where the never-evaluated annotations of `source` are; none without the import."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names)
               for node in tree.body):
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            found.append(node.returns)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)  # its value, if any, is evaluated: not skipped
    # Lines are 1-based and columns 0-based in both ast and cosmic-ray (parso); ast's
    # columns count UTF-8 bytes, the same as characters in annotations, which are ASCII.
    return [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found]


def inside(spans: list[Span], start: tuple[int, int], end: tuple[int, int]) -> bool:
    return any(first <= tuple(start) and tuple(end) <= last for first, last in spans)


def skip_annotation_mutants(session: Path, root: Path) -> int:
    """Mark every work item of `session` whose mutations all lie in an annotation as
    skipped (output "annotation"); `root` is where its module paths are relative to.
    Returns how many were marked."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans: dict[Path, list[Span]] = {}
    marked = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.work_items):
            for m in item.mutations:
                if m.module_path not in spans:
                    spans[m.module_path] = annotation_spans((root / m.module_path).read_text())
            if item.mutations and all(inside(spans[m.module_path], m.start_pos, m.end_pos)
                                      for m in item.mutations):
                db.set_result(item.job_id, WorkResult(
                    output=ANNOTATION, worker_outcome=WorkerOutcome.SKIPPED))
                marked += 1
    return marked
