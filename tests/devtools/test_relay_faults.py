"""The lossy relay's scripted faults: the first datagrams each way meet the fates a test
asks for, whatever the seed; after them the dice decide."""

import socket

from devtools.faults.relay import Faults, LossyRelay


def _receive_all(sock: socket.socket, want: int) -> list[bytes]:
    got = []
    sock.settimeout(5)
    while len(got) < want:
        try:
            got.append(sock.recv(2048))
        except TimeoutError:
            break
    sock.settimeout(0.3)  # and nothing more than asked for
    try:
        got.append(sock.recv(2048))
    except TimeoutError:
        pass
    return got


def test_scripted_faults_drop_then_duplicate_then_pass():
    backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend.bind(("127.0.0.1", 0))
    device = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    faults = Faults(drop=0, duplicate=0, reorder=0, delay_s=0,
                    scripted=("drop", "duplicate", "pass"))
    with backend, device, LossyRelay(backend.getsockname(), faults, seed=1) as relay:
        for n in (b"1", b"2", b"3", b"4"):
            device.sendto(n, ("127.0.0.1", relay.port))
        assert sorted(_receive_all(backend, 4)) == [b"2", b"2", b"3", b"4"]
        assert relay.stats["up_dropped"] == 1 and relay.stats["up_duplicated"] == 1
