"""The firmware honours an overloaded backend's 5.03 Max-Age (MicroPython unix port).

The backend sheds every event (backlog limit 0) with Max-Age 2. The first press is
answered 5.03 and queued; until Max-Age (plus jitter) has passed the firmware sends
nothing at all — the second press and a flush never reach the backend. Once the
backend takes events again and the quiet time is over, a flush delivers both, in order.
"""

import time

from sqlalchemy import select

from backend.coap.server import OverloadPolicy
from backend.storage.models import Device, Event
from devtools.mpy import FIRMWARE, popen_script
from tests.conftest import BackendThread, make_world

RETRY_S = 2


def _line(proc) -> str:
    while True:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        if not line.startswith("# "):
            return line.strip()


def _command(proc, command: str) -> str:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return _line(proc)


def test_the_firmware_stays_quiet_for_max_age_then_delivers_the_queue(settings, tmp_path):
    settings = settings.with_(overload_max_waiting=0, overload_retry_s=RETRY_S)
    with BackendThread(settings) as backend:
        button = make_world(backend, tmp_path / "bundles", buttons=1).buttons[0]
        proc = popen_script(FIRMWARE / "main_unix.py", button.bundle_dir,
                            env={"REPLENISH_ACK_TIMEOUT_MS": "300"})
        try:
            first = _command(proc, "press")
            assert first.startswith("LED error seq=1 result=163 "), first
            assert backend.overload.shed_count == 1
            second = _command(proc, "press")  # quiet: queued without being sent
            assert second.startswith("LED error seq=2 "), second
            assert _command(proc, "flush") == "FLUSH delivered=0 queued=2"
            assert backend.overload.shed_count == 1  # nothing reached the backend

            backend.overload.policy = OverloadPolicy()  # the backend recovers
            time.sleep(RETRY_S * 1.5 + 0.2)  # Max-Age plus the largest jitter
            delivered = [_command(proc, "flush")]
            while delivered[-1].startswith("LED "):
                delivered.append(_line(proc))
            assert delivered[-1] == "FLUSH delivered=2 queued=0", delivered
            assert [line.split()[1:3] for line in delivered[:2]] == [
                ["ordered", "seq=1"], ["already_ordered", "seq=2"]]
        finally:
            proc.stdin.close()
            proc.wait(30)
        with backend.sessions() as session:
            device = session.scalars(
                select(Device).where(Device.device_id == button.device_id)).one()
            events = session.scalars(select(Event).where(Event.device_pk == device.id)
                                     .order_by(Event.seq)).all()
            assert [(e.seq, e.result) for e in events] == [(1, 65), (2, 67)]
