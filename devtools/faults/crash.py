"""The crash scenario: steady load from many devices, the backend SIGKILLed at random
moments (one of them while the order worker is in the middle of a delivery), the
merchant down for a while; then every guarantee is checked against the database.

What is counted (all from what the devices saw and what the database holds):
- sent: distinct events the devices sent (a retransmission is not a new event);
- acknowledged: events that got an authenticated answer (MAC verified, seq and code
  match) other than 5.03: the backend said "committed";
- stored: events in the database; lost: acknowledged but not stored (must be 0);
- orders; duplicates: second open orders on one device slot (the policy allows one)
  plus events stored twice (must be 0);
- answer_mismatches: after the run every acknowledged event is sent once more, as a
  device that lost the answer would; it must get the same code and order (must be 0);
- conflicts: 4.09 answers to the devices' own events (must be 0: one event in flight
  per device, as on a real button);
- unanswered: events still held by a device when the run ends (must be 0);
- outbox_pending / outbox_dead at the end, merchant_orders / merchant_requests: the
  merchant acted once per order although some deliveries were sent more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, update

from backend import protocol
from backend.orders.lifecycle import OPEN_STATES
from backend.protocol import Kind, WireEvent
from backend.storage import db
from backend.storage.models import Device, Event, Household, Order, OutboxItem
from devtools.bench.fleet import provision_fleet
from devtools.bench.loadgen import UNAVAILABLE, Request, Workload
from devtools.faults.backend_proc import ROOT, BackendProcess
from devtools.faults.devices import KeepingLoadGenerator
from devtools.faults.hostile import LiveHostility
from devtools.faults.merchant import FaultyMerchant
from devtools.faults.relay import Faults, LossyRelay

CONFLICT = 137  # 4.09


@dataclass
class CrashConfig:
    devices: int = 300
    rate: float = 150.0  # events per second offered
    duration_s: float = 40.0
    kills: int = 4
    merchant_down_s: float = 6.0
    lease_s: float = 5.0
    seed: int | None = None
    db_url: str | None = None  # None: SQLite in the work directory
    workdir: Path | None = None
    window: int = 64  # outstanding requests while the held events are sent at the end
    relay: Faults | None = None  # devices reach the backend through a lossy relay
    hostile_live: int = 0  # hostile datagrams sent at the backend during the load


@dataclass
class Tally:
    """What the devices saw, per event (device index, seq)."""

    sent: set = field(default_factory=set)
    answers: dict = field(default_factory=dict)  # (device, seq) -> (code, order)
    codes: Counter = field(default_factory=Counter)
    conflicts: int = 0
    bare_503: int = 0
    replayed: dict = field(default_factory=dict)  # the answers of the second sending
    retransmissions: int = 0
    kept: int = 0  # events a device kept after its last retransmission or a bare 5.03

    def on_answer(self, request, msg, answer) -> None:
        self.codes[msg.code] += 1
        if answer is None:
            if msg.code == UNAVAILABLE:
                self.bare_503 += 1
            return
        if msg.code == CONFLICT:
            self.conflicts += 1
            return
        self.answers[(request.device, request.seq)] = (msg.code, answer.order)


def run_crash(config: CrashConfig, log=print) -> dict:
    seed = config.seed if config.seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    random.seed(seed)  # the load generator's jitter, message ids and tokens
    log(f"faults: seed {seed} (rerun with --seed {seed})")
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        workdir = Path(config.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        db_url = config.db_url or f"sqlite:///{workdir / 'replenish.db'}"
        result = _run(config, rng, workdir, db_url, log)
    result["seed"] = seed
    return result


def _run(config: CrashConfig, rng: random.Random, workdir: Path, db_url: str, log) -> dict:
    kek = secrets.token_bytes(32)
    fleet = provision_fleet(db_url, kek, config.devices, name="faults")
    hold_window_zero(db_url)  # orders go to the merchant at once
    secret = secrets.token_hex(16)
    merchant = FaultyMerchant(secret)
    env = {**os.environ, "DATABASE_URL": db_url, "REPLENISH_KEK": kek.hex(),
           "REPLENISH_DATA_DIR": str(workdir), "REPLENISH_COAP_HOST": "127.0.0.1",
           "REPLENISH_MERCHANT_URL": merchant.url, "REPLENISH_MERCHANT_SECRET": secret,
           "REPLENISH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",  # the merchant is on loopback
           "REPLENISH_WORKER_POLL_S": "0.2", "REPLENISH_OUTBOX_LEASE_S": str(config.lease_s),
           # A call must end before its lease does (the worker warns otherwise: another
           # worker could send it again meanwhile); the faulty merchant answers at once.
           "REPLENISH_OUTBOUND_TIMEOUT_S": f"{config.lease_s / 2:g}",
           "PYTHONPATH": str(ROOT)}
    backend = BackendProcess(env, workdir / "backend.log")
    tally = Tally()
    relay_stats = None
    with merchant:
        backend.start()
        try:
            killer = Killer(backend, merchant, config, rng, log)
            hostility = LiveHostility(backend.port, config.hostile_live, rng.randrange(2**32),
                                      per_s=max(1.0, config.hostile_live / config.duration_s))
            hostility.start()
            with contextlib.ExitStack() as stack:
                port = backend.port
                if config.relay is not None:
                    relay = stack.enter_context(LossyRelay(
                        ("127.0.0.1", backend.port), config.relay, rng.randrange(2**32)))
                    port = relay.port
                    relay_stats = relay.stats
                held = asyncio.run(_load(port, fleet, config, tally, killer))
            killer.join()
            hostility.join()
            outbox = _wait_for_outbox(db_url, timeout_s=config.lease_s * 4 + 60)
        finally:
            backend.stop()
        checks = _check_database(db_url, fleet, tally)
        merchant_orders, merchant_requests = len(merchant.orders), len(merchant.requests)
    return {
        "sent": len(tally.sent), "acknowledged": len(tally.answers),
        "stored": checks["stored"], "orders": checks["orders"],
        "duplicates": checks["duplicates"], "lost": checks["lost"], "kills": killer.kills,
        "mid_delivery_kills": killer.mid_delivery, "answer_mismatches": checks["mismatches"],
        "conflicts": tally.conflicts, "unanswered": held,
        "retransmissions": tally.retransmissions, "kept_by_devices": tally.kept,
        "unavailable_503": tally.bare_503, "outbox_pending": outbox["pending"],
        "outbox_dead": outbox["dead"], "orders_failed": checks["failed"],
        "merchant_orders": merchant_orders, "merchant_requests": merchant_requests,
        "merchant_down_s": config.merchant_down_s, "devices": config.devices,
        "backend_log": str(workdir / "backend.log") if config.workdir else None,
        "database": "postgresql" if db_url.startswith("postgresql") else "sqlite",
        **({"relay": dict(relay_stats)} if relay_stats is not None else {}),
        "hostile_live": {"sent": len(hostility.datagrams), "bytes_in": hostility.bytes_in,
                         "bytes_out": hostility.bytes_out},
    }


def hold_window_zero(db_url: str) -> None:
    with db.transaction(db_url) as session:
        session.execute(update(Household).values(hold_window_s=0))


class Killer(threading.Thread):
    """Takes the merchant down at the start, brings it back with one delivery held
    open, kills the backend while that delivery is in flight, then kills it again at
    random moments; restarts it each time on the same port and database."""

    def __init__(self, backend: BackendProcess, merchant: FaultyMerchant,
                 config: CrashConfig, rng: random.Random, log):
        super().__init__(name="faults-killer", daemon=True)
        self.backend, self.merchant, self.config, self.log = backend, merchant, config, log
        span = config.duration_s
        first = config.merchant_down_s
        # The later kills: random moments after the mid-delivery one, spread apart so
        # each restart is done before the next kill.
        slots = max(1, config.kills - 1)
        self.times = sorted(first + (span - first) * (i + rng.uniform(0.2, 0.8)) / slots
                            for i in range(config.kills - 1))
        self.kills = 0
        self.mid_delivery = 0
        self.started_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # reported by the main thread
            self.error = err

    def _run(self) -> None:
        self.started_at = time.monotonic()
        if self.config.merchant_down_s > 0:
            self.merchant.down()
            self.log(f"faults: merchant down for {self.config.merchant_down_s:.1f} s")
            time.sleep(self.config.merchant_down_s)
        self.merchant.stall_next()
        self.merchant.up()
        if self.merchant.stalled.wait(60):
            self._kill("while the order worker waits on the merchant (mid-delivery)")
            self.mid_delivery += 1
        self.merchant.release()
        for at in self.times:
            delay = self.started_at + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._kill("at a random moment")

    def _kill(self, when: str) -> None:
        elapsed = time.monotonic() - self.started_at
        self.backend.kill()
        self.kills += 1
        self.log(f"faults: SIGKILL {self.kills} at {elapsed:.1f} s {when}; restarting")
        self.backend.start()


async def _load(port: int, fleet, config: CrashConfig, tally: Tally, killer: Killer) -> int:
    workload = Workload(fleet)
    total = int(config.rate * config.duration_s)
    workload.prepare(total)
    for d, queue in enumerate(workload.queues):
        tally.sent.update((d, request.seq) for request in queue)
    gen = KeepingLoadGenerator("127.0.0.1", port, workload, sockets=min(256, len(fleet)),
                               on_answer=tally.on_answer)
    await gen.open()
    try:
        killer.start()
        phase = await gen.run(duration_s=config.duration_s, rate=config.rate, drain_s=120)
        tally.retransmissions += phase.retransmitted
        while killer.is_alive():  # the last restart may still be under way
            await asyncio.sleep(0.2)
        if killer.error is not None:
            raise killer.error
        held = await gen.run_until_all_answered(window=config.window)
        tally.kept += gen.kept
        # Every acknowledged event once more, as a device whose answer was lost would
        # (a new message, the same bytes): the answer must be the same.
        replay = Workload(fleet)
        requests = {(r.device, r.seq): r for q in _all_requests(fleet, tally) for r in q}
        for (d, seq), request in requests.items():
            replay.queues[d].append(request)
        first = dict(tally.answers)
        tally.answers.clear()
        again = KeepingLoadGenerator("127.0.0.1", port, replay, sockets=min(256, len(fleet)),
                                     on_answer=tally.on_answer)
        await again.open()
        try:
            held += await again.run_until_all_answered(window=config.window)
        finally:
            again.close()
        tally.replayed = tally.answers
        tally.answers = first
        return held
    finally:
        gen.close()


def _all_requests(fleet, tally: Tally):
    """The acknowledged events, re-encoded (encoding is deterministic: same bytes)."""
    by_device = defaultdict(list)
    for (d, seq) in tally.answers:
        device = fleet[d]
        payload = protocol.encode_event(device.key, device.kid,
                                        WireEvent(seq=seq, kind=Kind.PRESS, slot=0))
        by_device[d].append(Request(d, seq, payload, payload[-protocol.TAG_BYTES:]))
    return [sorted(requests, key=lambda r: r.seq) for requests in by_device.values()]


def _wait_for_outbox(db_url: str, timeout_s: float) -> dict:
    """Until nothing is pending in the outbox (bounded); the counts by status."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.transaction(db_url) as session:
            counts = dict(session.execute(select(OutboxItem.status, func.count())
                                          .group_by(OutboxItem.status)).all())
        if not counts.get("pending") or time.monotonic() > deadline:
            return {"pending": counts.get("pending", 0), "dead": counts.get("dead", 0),
                    "done": counts.get("done", 0)}
        time.sleep(0.5)


def _check_database(db_url: str, fleet, tally: Tally) -> dict:
    index = {device.kid.hex(): d for d, device in enumerate(fleet)}
    with db.transaction(db_url) as session:
        pk_to_index = {pk: index[device_id] for pk, device_id in
                       session.execute(select(Device.id, Device.device_id)).all()}
        stored_keys = Counter(
            (pk_to_index[pk], seq) for pk, seq in
            session.execute(select(Event.device_pk, Event.seq)).all())
        orders = session.execute(select(Order.id, Order.device_pk, Order.slot_index,
                                        Order.state)).all()
    open_per_slot = Counter((pk, slot) for _id, pk, slot, state in orders
                            if state in OPEN_STATES)
    order_of_device = defaultdict(set)
    for order_id, pk, _slot, _state in orders:
        order_of_device[pk_to_index[pk]].add(order_id)
    duplicates = (sum(n - 1 for n in open_per_slot.values() if n > 1)
                  + sum(n - 1 for n in stored_keys.values() if n > 1))
    lost = sum(1 for key in tally.answers if key not in stored_keys)
    # Every answer naming an order names that device's order in the database.
    wrong_order = sum(1 for (d, _seq), (_code, order) in tally.answers.items()
                      if order is not None and order not in order_of_device[d])
    mismatches = wrong_order + sum(1 for key, first in tally.answers.items()
                                   if tally.replayed.get(key) != first)
    return {"stored": sum(stored_keys.values()), "orders": len(orders),
            "duplicates": duplicates, "lost": lost, "mismatches": mismatches,
            "failed": sum(1 for *_rest, state in orders if state == "failed")}
