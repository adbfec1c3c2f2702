"""`make faults` in short: the real backend (`python -m backend run`)
under steady load from 40 devices, SIGKILLed three times (once while the order engine
waits on the merchant, mid-delivery), the merchant down for a while. Nothing
acknowledged is lost, no order exists twice, a resent event gets the same answer, the
outbox finishes and the merchant acts once per order; hostile datagrams sent at the
backend meanwhile store nothing and get fewer bytes back than they carry. SQLite here; `make faults
FAULTS_ARGS=--postgres` runs it on PostgreSQL (docs/reliability.md)."""

from devtools.faults.__main__ import failures
from devtools.faults.crash import CrashConfig, run_crash


def test_sigkills_under_load_lose_nothing_and_order_nothing_twice(tmp_path):
    result = run_crash(CrashConfig(devices=40, rate=40, duration_s=12, kills=3,
                                   merchant_down_s=2, lease_s=2, workdir=tmp_path,
                                   hostile_live=300),
                       log=print)
    why = f"seed {result['seed']} (python -m devtools.faults --seed {result['seed']}): {result}"
    assert failures(result) == [], why
    assert result["kills"] >= 3 and result["mid_delivery_kills"] == 1, why
    assert result["acknowledged"] == result["sent"] == result["stored"], why
    assert result["orders"] == 40, why  # one per device: its first press; later ones 2.03
    # Hostile datagrams sent meanwhile stored nothing (stored == sent above) and got
    # back fewer bytes than they carried.
    live = result["hostile_live"]
    assert live["sent"] == 300 and live["bytes_out"] < live["bytes_in"], why
    # The delivery cut by the kill was sent again with its idempotency key; the
    # merchant acted once.
    assert result["merchant_requests"] > result["merchant_orders"] == result["orders"], why
