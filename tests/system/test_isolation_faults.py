"""`make faults`' isolation runs in short: the real backend twice, one household's
webhook blackholed in the second run; every order is placed in both, and the other
households' mean order latency stays within a few times the run without it."""

from devtools.faults.isolation import IsolationConfig, isolation_failures, run_isolation


def test_a_blackholed_webhook_leaves_other_households_orders_on_time(tmp_path):
    result = run_isolation(IsolationConfig(quiet_households=2, buttons=4, backlog=20,
                                           spread_s=2.0), workdir=tmp_path, log=print)
    assert isolation_failures(result) == [], result
    held = result["blackhole"]["blackhole"]
    assert held["connections"] >= 1 and held["most_open"] <= 2, result  # per household
