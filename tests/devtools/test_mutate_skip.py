"""`make mutate` skips exactly the mutants inside never-evaluated annotations
(devtools/mutate_skip.py), on a real cosmic-ray session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devtools.mutate_skip import ANNOTATION, annotation_spans, skip_annotation_mutants

SOURCE = '''from __future__ import annotations


def pick(values: list[int] | None, limit: int = 3) -> int | None:
    total: int | None = limit + 1
    return None if values is None else min(values) - total
'''
ANNOTATED_LINES = {4}  # every mutant of line 4 is in an annotation except `= 3`


def test_spans_need_the_future_import():
    assert annotation_spans(SOURCE)
    assert annotation_spans(SOURCE.replace("from __future__ import annotations\n", "")) == []


def test_annotation_mutants_are_skipped_and_the_others_are_not(tmp_path):
    from cosmic_ray.work_db import WorkDB, use_db

    (tmp_path / "pick.py").write_text(SOURCE)
    (tmp_path / "cr.toml").write_text(
        '[cosmic-ray]\nmodule-path = "pick.py"\ntimeout = 10\nexcluded-modules = []\n'
        'test-command = "true"\n\n[cosmic-ray.distributor]\nname = "local"\n')
    subprocess.run([str(Path(sys.executable).with_name("cosmic-ray")), "init", "cr.toml",
                    "s.sqlite"], cwd=tmp_path, check=True)
    marked = skip_annotation_mutants(tmp_path / "s.sqlite", tmp_path)

    with use_db(str(tmp_path / "s.sqlite"), WorkDB.Mode.open) as db:
        skipped = {job for job, result in db.results if result.output == ANNOTATION}
        where = {item.job_id: item.mutations[0] for item in db.work_items}
    assert marked == len(skipped) > 0
    lines = SOURCE.splitlines()
    for job, m in where.items():
        text = lines[m.start_pos[0] - 1][m.start_pos[1]:m.end_pos[1]]
        in_annotation = (m.start_pos[0] in ANNOTATED_LINES and text != "3"
                         or m.start_pos[0] == 5 and m.start_pos[1] < 21)
        assert (job in skipped) == in_annotation, (m.start_pos, m.operator_name, text)
    # Not skipped: `= 3`, `limit + 1` (line 5's value) and everything on line 6.
    assert {m.start_pos[0] for job, m in where.items() if job not in skipped} >= {4, 5, 6}
