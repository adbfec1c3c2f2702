"""One household's webhook blackholed (accepts connections, never answers): the other
households' order latency, measured next to the same run without it (issue 16).

Each run: a fresh database, `quiet` households of a few buttons each and one `noisy`
household with a backlog of notifications, the real backend as a subprocess (simulator
fulfillment, hold window 0). Every button presses once, spread over a few seconds;
latency is the server's own `placed_at - created_at` per order. The second run points
the noisy household's webhook at a `Blackhole`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update

from backend import protocol
from backend.orders import notifications
from backend.protocol import Kind, WireEvent
from backend.storage import db
from backend.storage.models import Household, Order
from devtools.bench.fleet import provision_fleet
from devtools.faults.backend_proc import ROOT, BackendProcess
from devtools.faults.blackhole import Blackhole
from devtools.net import coap_post_all

SLOWER_AT_MOST = 4.0  # quiet households' mean latency, blackhole vs. none


@dataclass
class IsolationConfig:
    quiet_households: int = 4
    buttons: int = 8  # per household
    backlog: int = 40  # notifications already waiting for the noisy household's webhook
    spread_s: float = 4.0  # presses spread over this long


def _stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {"count": len(ordered), "mean_s": round(sum(ordered) / len(ordered), 3),
            "p50_s": round(ordered[len(ordered) // 2], 3),
            "p95_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
            "max_s": round(ordered[-1], 3)}


def run_once(config: IsolationConfig, db_url: str, workdir: Path, blackholed: bool,
             log) -> dict:
    kek = secrets.token_bytes(32)
    quiet = [provision_fleet(db_url, kek, config.buttons, name=f"quiet{n}")
             for n in range(config.quiet_households)]
    noisy = provision_fleet(db_url, kek, config.buttons, name="noisy")
    with db.transaction(db_url) as session:
        session.execute(update(Household).values(hold_window_s=0))
        noisy_id = session.scalar(select(func.max(Household.id)))
    with Blackhole() as blackhole:
        if blackholed:
            with db.transaction(db_url) as session:
                household = session.get(Household, noisy_id)
                household.webhook_url, household.webhook_secret = blackhole.url, "noisy"
                session.flush()
                for n in range(config.backlog):
                    notifications.notify(session, noisy_id, "low_battery",
                                         f"Battery low ({n}).")
        env = {**os.environ, "DATABASE_URL": db_url, "REPLENISH_KEK": kek.hex(),
               "REPLENISH_DATA_DIR": str(workdir), "REPLENISH_COAP_HOST": "127.0.0.1",
               "REPLENISH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the blackhole
               "REPLENISH_WORKER_POLL_S": "0.2", "PYTHONPATH": str(ROOT)}
        backend = BackendProcess(env, workdir / f"isolation-{int(blackholed)}.log")
        backend.start()
        try:
            devices = [d for fleet in quiet for d in fleet] + noisy
            pause_s = config.spread_s / len(devices)
            url = f"coap://127.0.0.1:{backend.port}/ev"
            for device in devices:  # interleaved: a quiet press never waits for noisy ones
                coap_post_all(url, [protocol.encode_event(
                    device.key, device.kid, WireEvent(seq=1, kind=Kind.PRESS, slot=0))])
                time.sleep(pause_s)
            total = len(devices)
            for _ in range(600):  # bounded: until every order is placed
                with db.transaction(db_url) as session:
                    placed = session.scalar(select(func.count()).select_from(Order)
                                            .where(Order.placed_at.is_not(None)))
                if placed >= total:
                    break
                time.sleep(0.1)
        finally:
            backend.stop()
        held = {"connections": blackhole.accepted, "most_open": blackhole.most_open}
    with db.transaction(db_url) as session:
        rows = session.execute(select(Order.household_id, Order.created_at,
                                      Order.placed_at)).all()
    late = [(h, (p - c).total_seconds()) for h, c, p in rows if p is not None]
    result = {"blackholed": blackholed,
              "orders": len(rows), "placed": len(late),
              "quiet": _stats([s for h, s in late if h != noisy_id]),
              "noisy": _stats([s for h, s in late if h == noisy_id]),
              "blackhole": held}
    log(f"isolation run ({'with' if blackholed else 'without'} a blackholed webhook): "
        f"{result}")
    return result


def run_isolation(config: IsolationConfig, new_db_url=None, workdir: Path | None = None,
                  log=print) -> dict:
    """Both runs; `new_db_url()` gives a fresh database per run (default: SQLite files)."""
    with tempfile.TemporaryDirectory(prefix="replenish-isolation-") as tmp:
        base = Path(workdir or tmp)
        runs = []
        for blackholed in (False, True):
            folder = base / f"isolation-{'blackhole' if blackholed else 'normal'}"
            folder.mkdir(parents=True, exist_ok=True)
            db_url = new_db_url() if new_db_url else f"sqlite:///{folder / 'replenish.db'}"
            runs.append(run_once(config, db_url, folder, blackholed, log))
    normal, blackhole = runs
    return {"normal": normal, "blackhole": blackhole}


def isolation_failures(result: dict) -> list[str]:
    bad = []
    for name, run in result.items():
        if run["placed"] != run["orders"]:
            bad.append(f"isolation ({name}): {run['orders'] - run['placed']} orders not placed")
    normal, blackhole = result["normal"]["quiet"], result["blackhole"]["quiet"]
    if normal.get("count") and blackhole.get("count") and \
            blackhole["mean_s"] > SLOWER_AT_MOST * max(normal["mean_s"], 0.01):
        bad.append(f"isolation: other households' orders took {blackhole['mean_s']} s on "
                   f"average with a blackholed webhook, {normal['mean_s']} s without")
    if result["blackhole"]["blackhole"]["connections"] == 0:
        bad.append("isolation: the blackhole was never called (the fault was not planted)")
    return bad


ROWS = [("orders placed / created", lambda r: f"{r['placed']} / {r['orders']}"),
        ("other households: mean s", lambda r: r["quiet"].get("mean_s")),
        ("other households: p50 s", lambda r: r["quiet"].get("p50_s")),
        ("other households: p95 s", lambda r: r["quiet"].get("p95_s")),
        ("other households: max s", lambda r: r["quiet"].get("max_s")),
        ("its own household: mean s", lambda r: r["noisy"].get("mean_s")),
        ("blackhole: calls / most at once",
         lambda r: f"{r['blackhole']['connections']} / {r['blackhole']['most_open']}")]


def print_isolation(result: dict, out=None) -> None:
    width = max(len(label) for label, _ in ROWS)
    print(f"\n{'one household webhook blackholed':{width}}  {'without':>10}  {'with':>10}",
          file=out)
    for label, value in ROWS:
        print(f"{label:{width}}  {value(result['normal'])!s:>10}  "
              f"{value(result['blackhole'])!s:>10}", file=out)
