"""Datagrams aiocoap cannot decode (a Uri-Path that is not UTF-8) are dropped with at
most one short warning per second, not a traceback each; the server keeps serving."""

import logging
import socket

import aiocoap

from devtools.net import coap_get

# CON GET, message id 0x1234, one Uri-Path option holding the bytes ff fe.
NOT_UTF8_PATH = b"\x40\x01\x12\x34\xb2\xff\xfe"


def test_a_flood_of_unparsable_datagrams_logs_a_line_not_a_traceback_each(backend, caplog):
    with caplog.at_level(logging.WARNING), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(100):  # under the socket buffer (about 250 of these)
            sock.sendto(NOT_UTF8_PATH, ("127.0.0.1", backend.coap_port))
        # A request after the flood is answered: the server kept serving. No sleep
        # needed: the server reads its one socket in order and the handler counts
        # synchronously, so once this is answered the 100 before it were handled.
        answer = coap_get(f"coap://127.0.0.1:{backend.coap_port}/.well-known/core")
    assert answer.code == aiocoap.Code.CONTENT
    assert backend.unparsable.dropped == 100
    warnings = [r for r in caplog.records if "cannot parse" in r.getMessage()]
    assert 1 <= len(warnings) <= 3  # one per second at most
    assert all(r.exc_info is None for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
