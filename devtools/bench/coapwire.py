"""Just enough CoAP framing (RFC 7252) for the load generator, by hand and fast.

aiocoap's client context costs far more per request than the servers under test, so
the generator builds and parses datagrams itself: a confirmable POST to /ev with
Content-Format 17, the empty ACK it sends for a separate response, and a parser for
whatever comes back (piggybacked answer, empty ACK, separate CON/NON answer, RST).
"""

from __future__ import annotations

import struct

CON, NON, ACK, RST = 0, 1, 2, 3
POST = 0x02
EMPTY = 0x00
OPT_URI_PATH = 11
OPT_CONTENT_FORMAT = 12
OPT_MAX_AGE = 14

_HEADER = struct.Struct("!BBH")


def _option(delta: int, value: bytes) -> bytes:
    """One option with a delta < 13 and a value shorter than 13 bytes."""
    assert delta < 13 and len(value) < 13
    return bytes([(delta << 4) | len(value)]) + value


def post_prefix(path: str = "ev", content_format: int = 17) -> bytes:
    """The options of every request (Uri-Path, Content-Format) and the payload marker."""
    cf = content_format.to_bytes(1, "big") if content_format else b""
    return (_option(OPT_URI_PATH, path.encode())
            + _option(OPT_CONTENT_FORMAT - OPT_URI_PATH, cf) + b"\xff")


def encode_con_post(mid: int, token: bytes, options_and_marker: bytes, payload: bytes) -> bytes:
    return (_HEADER.pack(0x40 | (CON << 4) | len(token), POST, mid) + token
            + options_and_marker + payload)


def encode_empty_ack(mid: int) -> bytes:
    return _HEADER.pack(0x40 | (ACK << 4), EMPTY, mid)


class Parsed:
    __slots__ = ("type", "code", "mid", "token", "content_format", "payload", "max_age")

    def __init__(self, mtype, code, mid, token, content_format, payload, max_age=None):
        self.type, self.code, self.mid, self.token = mtype, code, mid, token
        self.content_format, self.payload, self.max_age = content_format, payload, max_age


def parse(data: bytes) -> Parsed | None:
    """Parse a datagram; None when it is not a well-formed CoAP version 1 message."""
    if len(data) < 4:
        return None
    b0, code, mid = _HEADER.unpack_from(data)
    if b0 >> 6 != 1:
        return None
    tkl = b0 & 0x0F
    pos = 4 + tkl
    if tkl > 8 or pos > len(data):
        return None
    token = data[4:pos]
    number = 0
    content_format = max_age = None
    end = len(data)
    while pos < end:
        byte = data[pos]
        pos += 1
        if byte == 0xFF:
            return Parsed((b0 >> 4) & 3, code, mid, token, content_format, data[pos:], max_age)
        delta, pos = _extended(byte >> 4, data, pos)
        length, pos = _extended(byte & 0x0F, data, pos)
        if delta < 0 or length < 0:
            return None
        number += delta
        if number == OPT_CONTENT_FORMAT:
            content_format = int.from_bytes(data[pos:pos + length], "big")
        elif number == OPT_MAX_AGE:
            max_age = int.from_bytes(data[pos:pos + length], "big")
        pos += length
    return Parsed((b0 >> 4) & 3, code, mid, token, content_format, b"", max_age)


def _extended(nibble: int, data: bytes, pos: int) -> tuple[int, int]:
    """An option delta or length (RFC 7252 3.1): its value and the position after it;
    -1 for the reserved nibble 15."""
    if nibble == 13:
        return data[pos] + 13, pos + 1
    if nibble == 14:
        return int.from_bytes(data[pos:pos + 2], "big") + 269, pos + 2
    if nibble == 15:
        return -1, pos
    return nibble, pos
