"""`make mutate`: mutation testing of the core modules with cosmic-ray (docs/testing.md).

For each module: a copy of the tracked tree in build/mutate/tree, a cosmic-ray session
(build/mutate/<module>.sqlite), every mutant applied to the file *on disk* in that
copy and the module's fast tests run against it. Firmware modules are mutated the same
way, so the tests that drive the real MicroPython interpreter read the mutated source.
Nothing in the work tree is touched.

Output per module: mutants, killed, survived, timed out, and where each survivor is;
then one JSON line {"mutants", "killed", "survived", "score"} over all modules run
(score = killed / (mutants - incompetent); a timed-out mutant counts as killed, as
cosmic-ray counts it, and is also shown apart). Mutants inside never-evaluated type
annotations are marked skipped before the run (devtools/mutate_skip.py), shown as
"skipped (annotation)" and not counted. With --workers 2 (the default) two cosmic-ray
http workers, each in its own copy of the tree, run mutants side by side
(devtools/mutate_workers.py). The run ends with its time against the estimate.

    python -m devtools.mutate                     # every module (long: see --estimate)
    python -m devtools.mutate --module counter    # one (repeatable)
    python -m devtools.mutate --estimate          # mutant counts x one test run, no mutants run
    python -m devtools.mutate --workers 1         # one mutant at a time (local distributor)
    python -m devtools.mutate --list
"""

from __future__ import annotations

import argparse
import compileall
import json
import py_compile
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from devtools.mutate_skip import ANNOTATION, skip_annotation_mutants
from devtools.mutate_workers import HttpWorkers
from tests.migrated import SHARED_SQLITE_TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "mutate"
TREE = OUT / "tree"
# Without plugin autoload (hypothesis, schemathesis, playwright, xdist): pytest starts
# in a fraction of a second instead of about three, which is most of a firmware run.
# --basetemp relative to the worker's tree: parallel workers never share temporary dirs.
# The SQLite schema is migrated once per run (TEMPLATE) and copied by each test process
# (tests/migrated.py): no migration imports a mutated module.
_PYTEST = ("env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {template_env}={template} {python} -m pytest "
           "-x -q -p no:cacheprovider --basetemp=.pytest-tmp {options}")
TEMPLATE = OUT / "template.db"
BUDGET_MIN = 30  # issue 19: the whole run on this machine


@dataclass(frozen=True)
class Target:
    path: str  # the module, relative to the repository root
    tests: str  # pytest arguments: the fast tests that cover it
    conftest: bool = True  # False: the tests need none of tests/conftest.py's fixtures


# The core modules and the fast tests that cover each (SQLite only: the
# PostgreSQL runs exercise the same lines).
MODULES: dict[str, Target] = {
    "decide": Target("backend/ingest/decide.py",
                     "tests/backend/ingest/test_decide.py -k 'not postgresql'"),
    "policies": Target("backend/orders/policies.py",
                       "tests/backend/orders/test_policies.py -k 'not postgresql'"),
    "lifecycle": Target("backend/orders/lifecycle.py",
                        "tests/backend/orders/test_lifecycle_effects.py "
                        "tests/backend/orders/test_lifecycle.py -k 'not postgresql'"),
    "outbox": Target("backend/orders/outbox.py",
                     "tests/backend/orders/test_outbox_rules.py "
                     "tests/backend/orders/test_outbox.py -k 'not postgresql'"),
    # Without the database scan (a migration and a provisioned batch: most of a run).
    "keys": Target("backend/accounts/keys.py",
                   "tests/backend/accounts/test_keys.py "
                   "-k 'not test_database_never_holds_a_plain_key'", conftest=False),
    # The steps one by one, no servers (the rotation under traffic: test_keys.py).
    "kek_rotation": Target("provisioning/kek_rotation.py",
                           "tests/provisioning/test_kek_rotation.py", conftest=False),
    # The codec's exact unit tests, not the Hypothesis fuzzers (40 s a run).
    "protocol": Target("backend/protocol.py",
                       "tests/backend/test_protocol_codec.py tests/backend/test_vectors.py "
                       "tests/backend/test_protocol_doc.py::test_the_backend_enums_are_the_docs_tables "
                       "tests/backend/test_outcomes.py::"
                       "test_every_result_is_a_row_with_the_servers_name_for_it",
                       conftest=False),
    "fw_counter": Target("firmware/replenish/counter.py",
                         "tests/firmware/test_counter.py tests/firmware/test_wake.py",
                         conftest=False),  # test_wake: the counter across deep sleep (RTC)
    "fw_queue": Target("firmware/replenish/queue.py", "tests/firmware/test_queue.py", conftest=False),
    "fw_cose": Target("firmware/replenish/cose.py",
                      "tests/firmware/test_vectors.py tests/firmware/test_pycose.py", conftest=False),
    "fw_protocol": Target("firmware/replenish/protocol.py", "tests/firmware/test_vectors.py", conftest=False),
}


def copy_tree(workers: int) -> list[Path]:
    """The tracked files (as in the work tree now, changes included) in TREE, and one
    more copy per extra worker; returns the trees, TREE first."""
    trees = [TREE] + [OUT / f"tree-{n}" for n in range(2, workers + 1)]
    for tree in [TREE, *OUT.glob("tree-*")]:
        if tree.exists():
            shutil.rmtree(tree)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = TREE / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # Bytecode checked by source hash: each test run imports the backend compiled once
    # instead of compiling it every time (cosmic-ray turns bytecode writing off), and a
    # mutated file never matches its cached bytecode, however fast the mutants follow.
    compileall.compile_dir(TREE, quiet=1,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    for tree in trees[1:]:
        shutil.copytree(TREE, tree, symlinks=True)
    TEMPLATE.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-c", "import sys; from backend.storage import db; "
                    "db.upgrade(f'sqlite:///{sys.argv[1]}')", str(TEMPLATE)], cwd=TREE,
                   check=True)
    return trees


def test_command(target: Target) -> str:
    options = "" if target.conftest else "--noconftest"
    pytest = _PYTEST.format(python=sys.executable, options=options,
                            template_env=SHARED_SQLITE_TEMPLATE, template=TEMPLATE)
    return f"{pytest} {target.tests}"


def baseline(target: Target) -> float:
    """One run of the module's tests on the unmutated copy: they must pass; seconds."""
    started = time.monotonic()
    done = subprocess.run(shlex.split(test_command(target)), cwd=TREE, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"the tests for {target.path} fail without any mutant:\n"
                 f"{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def write_config(name: str, target: Target, timeout_s: float, urls: list[str]) -> Path:
    """The module's cosmic-ray config: local distributor, or http with `urls`."""
    config = OUT / f"{name}.toml"
    command = test_command(target).replace("\\", "\\\\").replace('"', '\\"')
    distributor = ('name = "local"\n' if not urls else
                   'name = "http"\n\n[cosmic-ray.distributor.http]\n'
                   f"worker-urls = {json.dumps(urls)}\n")
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.path}"\n'
        f"timeout = {timeout_s:.0f}\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n\n'
        "[cosmic-ray.distributor]\n" + distributor)
    return config


def cosmic_ray(*args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("cosmic-ray")), *args], cwd=TREE,
                   check=True)


def init(name: str, target: Target, timeout_s: float,
         urls: list[str]) -> tuple[Path, Path]:
    """A fresh session for the module, its annotation mutants already marked skipped."""
    config = write_config(name, target, timeout_s, urls)
    session = OUT / f"{name}.sqlite"
    session.unlink(missing_ok=True)
    cosmic_ray("init", str(config), str(session))
    skip_annotation_mutants(session, TREE)
    return config, session


def results(session: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    out = {"mutants": 0, "killed": 0, "survived": 0, "timed_out": 0, "incompetent": 0,
           "pending": 0, "skipped": 0, "survivors": []}
    with use_db(str(session), WorkDB.Mode.open) as db:
        done = dict(db.results)
        for item in db.work_items:
            out["mutants"] += 1
            result = done.get(item.job_id)
            if result is None:
                out["pending"] += 1
                continue
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                out["mutants"] -= 1  # filtered out (docs/testing.md): not a mutant run
                out["skipped"] += result.output == ANNOTATION
            elif result.test_outcome in (TestOutcome.INCOMPETENT, None):
                out["incompetent"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                out["survived"] += 1
                for m in item.mutations:
                    out["survivors"].append(
                        f"{m.module_path}:{m.start_pos[0]}:{m.start_pos[1]} "
                        f"{m.operator_name.split('/')[-1]} #{m.occurrence}")
            else:
                out["killed"] += 1
                out["timed_out"] += result.output == "timeout"
    return out


def score(killed: int, mutants: int, incompetent: int = 0) -> float:
    counted = mutants - incompetent
    return round(killed / counted, 3) if counted else 1.0


def report_line(name: str, target: Target, got: dict, minutes: float) -> str:
    return (f"{name}: {target.path}: mutants {got['mutants']}, killed {got['killed']}, "
            f"survived {got['survived']}, timed out {got['timed_out']}, "
            f"incompetent {got['incompetent']}, skipped (annotation) {got['skipped']}, "
            f"score {score(got['killed'], got['mutants'], got['incompetent'])} "
            f"({minutes:.1f} min)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__.split("\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES),
                        help="only this module (repeatable); all by default")
    parser.add_argument("--estimate", action="store_true",
                        help="count mutants and time one test run per module; run none")
    parser.add_argument("--workers", type=int, default=2,
                        help="mutants run side by side, each worker in its own tree "
                             "(default 2, the machine's cores; 1: cosmic-ray's local "
                             "distributor)")
    parser.add_argument("--list", action="store_true", help="the modules and their tests")
    args = parser.parse_args(argv)
    if args.list:
        for name, target in MODULES.items():
            print(f"{name:13} {target.path:34} {target.tests}")
        return 0
    names = args.module or list(MODULES)
    workers = max(1, args.workers)
    run_started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    trees = copy_tree(workers)
    # Every module's baseline and session first: the estimate is printed before any
    # mutant runs, and the run ends with its actual time next to it.
    planned = []
    estimate_s = 0.0
    # One worker: cosmic-ray's local distributor in TREE, no URLs.
    pool = HttpWorkers(trees, OUT) if workers > 1 else nullcontext(SimpleNamespace(urls=[]))
    with pool as pool:
        for name in names:
            target = MODULES[name]
            test_s = baseline(target)
            # A mutant that loops for ever is stopped at 5x a clean run (20 s at least,
            # for a loaded host): the 60 s floor cost kek_rotation 5 of its 8 minutes.
            timeout_s = max(20.0, 5 * test_s)
            config, session = init(name, target, timeout_s, pool.urls)
            found = results(session)
            module_s = found["mutants"] * test_s / workers
            estimate_s += module_s
            print(f"{name}: {target.path}: {found['mutants']} mutants "
                  f"(+{found['skipped']} skipped, annotation) x {test_s:.1f} s (one test "
                  f"run) / {workers} worker(s) = {module_s / 60:.1f} min at most", flush=True)
            planned.append((name, target, config, session))
        print(f"estimate for {len(names)} module(s): {estimate_s / 60:.1f} min at most "
              f"(budget {BUDGET_MIN} min; -x stops a killed mutant's tests at the first "
              "failure, so a run takes less)", flush=True)
        if args.estimate:
            return 0
        total = {"mutants": 0, "killed": 0, "survived": 0, "incompetent": 0}
        for name, target, config, session in planned:
            started = time.monotonic()
            cosmic_ray("exec", str(config), str(session))
            got = results(session)
            print(report_line(name, target, got, (time.monotonic() - started) / 60),
                  flush=True)
            for where in got["survivors"]:
                print(f"  survived: {where}", flush=True)
            for key in total:
                total[key] += got[key]
    took_min = (time.monotonic() - run_started) / 60
    print(f"whole run: {took_min:.1f} min (estimated at most {estimate_s / 60:.1f} min, "
          f"budget {BUDGET_MIN} min, {workers} worker(s))", flush=True)
    print(json.dumps({"mutants": total["mutants"], "killed": total["killed"],
                      "survived": total["survived"],
                      "score": score(total["killed"], total["mutants"], total["incompetent"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
