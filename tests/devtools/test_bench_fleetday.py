"""The bench's fleet day (devtools/bench/fleetday.py) against the real ingest, both databases.

Not timed: every device sends once, the mix is what the doc says, every answer is
MAC-checked and its code must be its kind's, and a wrong code is counted as an error.
"""

import asyncio
import secrets
from collections import Counter

import pytest

from devtools.bench import fleetday
from devtools.bench.loadgen import LoadGenerator
from devtools.bench.server import ServerProcess
from tests import migrated
from tests.conftest import DATABASES

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)


def drive(port: int, workload, window: int = 16):
    async def run():
        gen = LoadGenerator("127.0.0.1", port, workload, sockets=32)
        await gen.open()
        try:
            return await gen.run(60, window=window, drain_s=60)
        finally:
            gen.close()

    return asyncio.run(run())


@pytest.fixture
def fleet(db_url, tmp_path):
    migrated.migrate(db_url)
    kek = secrets.token_bytes(32)
    pools = fleetday.provision_fleet_day(db_url, kek, 1000)
    with ServerProcess("ingest", db_url=db_url, data_dir=tmp_path, kek_hex=kek.hex(),
                       log_path=tmp_path / "server.log") as server:
        yield pools, server


def test_the_mix_each_device_once_each_answer_its_kinds(fleet):
    pools, server = fleet
    sizes = {kind: len(pool) for kind, pool in pools.items()}
    assert sizes == fleetday.split(1000)
    workload = fleetday.FleetWorkload(pools)
    workload.prepare(300)
    result = drive(server.port, workload)
    assert result.sent == result.answered == 300
    assert (result.lost, result.errors, result.unmatched) == (0, 0, 0)
    kinds = Counter(workload.kinds)
    assert kinds == {"level": 180, "heartbeat": 90, "suppressed": 27, "first": 3}
    assert result.codes == {68: 270, 67: 27, 65: 3}
    assert len({device.kid for device in workload.devices}) == 300, "a device sent twice"
    assert {kind: len(pool) for kind, pool in pools.items()} == {
        kind: sizes[kind] - kinds[kind] for kind in sizes}, "used devices left the pools"


def test_an_answer_with_another_kinds_code_is_an_error(fleet):
    """Presses from devices with an open order, expected to create one: each 2.03 is
    counted as an error, though its MAC and seq verify."""
    pools, server = fleet
    mislabelled = fleetday.FleetWorkload({"first": pools["suppressed"]}, {"first": 1})
    mislabelled.prepare(20)
    result = drive(server.port, mislabelled, window=8)
    assert result.answered == 20 and result.codes == {67: 20}
    assert result.errors == 20
