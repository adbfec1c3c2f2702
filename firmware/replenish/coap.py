"""CoAP message codec (RFC 7252 section 3): header, token, options, payload."""

from micropython import const

_VERSION = const(1)
_PAYLOAD_MARKER = const(0xFF)
_MAX_TOKEN = const(8)

CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

EMPTY = const(0)
GET = const(1)
POST = const(2)

OPT_URI_HOST = const(3)
OPT_URI_PORT = const(7)
OPT_URI_PATH = const(11)
OPT_CONTENT_FORMAT = const(12)
OPT_MAX_AGE = const(14)  # on a 5.03: seconds to wait before trying again
OPT_URI_QUERY = const(15)
OPT_ACCEPT = const(17)
OPT_BLOCK2 = const(23)  # RFC 7959: block number << 4 | more << 3 | size exponent


class Message:
    __slots__ = ("mtype", "code", "mid", "token", "options", "payload")

    def __init__(self, mtype, code, mid, token=b"", options=None, payload=b""):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = options if options is not None else []  # [(number, bytes)]
        self.payload = payload

    def option_values(self, number):
        return [v for n, v in self.options if n == number]

    def uint_option(self, number):
        for n, v in self.options:
            if n == number:
                return int.from_bytes(v, "big") if v else 0
        return None

    @property
    def content_format(self):
        return self.uint_option(OPT_CONTENT_FORMAT)

    @property
    def uri_path(self):
        return [bytes(v).decode("utf-8") for v in self.option_values(OPT_URI_PATH)]


def uint_value(n):
    """Shortest option encoding of an unsigned integer (0 → empty)."""
    size = 0
    while n >> (8 * size):
        size += 1
    return n.to_bytes(size, "big") if size else b""


def path_options(path):
    return [(OPT_URI_PATH, seg.encode("utf-8")) for seg in path.split("/") if seg]


def _nibble(out_ext, n):
    if n < 13:
        return n
    if n < 269:
        out_ext.append(n - 13)
        return 13
    if n < 65805:
        out_ext.extend((n - 269).to_bytes(2, "big"))
        return 14
    raise ValueError("option delta/length too large")


def encode(msg):
    """Serialise msg; options are emitted in ascending number order (stable)."""
    if len(msg.token) > _MAX_TOKEN:
        raise ValueError("token longer than 8 bytes")
    out = bytearray(4)
    out[0] = (_VERSION << 6) | (msg.mtype << 4) | len(msg.token)
    out[1] = msg.code
    out[2] = (msg.mid >> 8) & 0xFF
    out[3] = msg.mid & 0xFF
    out.extend(msg.token)
    last = 0
    ext = bytearray()
    # MicroPython's sort is not stable: the index keeps repeated options (Uri-Path
    # segments, Uri-Query parts) in their order.
    ordered = sorted(range(len(msg.options)), key=lambda i: (msg.options[i][0], i))
    for number, value in (msg.options[i] for i in ordered):
        ext[:] = b""
        delta = _nibble(ext, number - last)
        length = _nibble(ext, len(value))
        out.append((delta << 4) | length)
        out.extend(ext)  # extended delta bytes come before extended length bytes
        out.extend(value)
        last = number
    if msg.payload:
        out.append(_PAYLOAD_MARKER)
        out.extend(msg.payload)
    return bytes(out)


def _ext(data, pos, nibble):
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos >= len(data):
            raise ValueError("truncated option")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise ValueError("truncated option")
        return ((data[pos] << 8) | data[pos + 1]) + 269, pos + 2
    raise ValueError("reserved option nibble 15")


def decode(data):
    """Parse a datagram into a Message; ValueError if it is not a valid CoAP message."""
    if len(data) < 4:
        raise ValueError("datagram shorter than a CoAP header")
    first = data[0]
    if first >> 6 != _VERSION:
        raise ValueError("unknown CoAP version")
    tkl = first & 0x0F
    if tkl > _MAX_TOKEN:
        raise ValueError("token length over 8")
    code = data[1]
    pos = 4 + tkl
    if pos > len(data):
        raise ValueError("truncated token")
    msg = Message((first >> 4) & 3, code, (data[2] << 8) | data[3], bytes(data[4:pos]))
    if code == EMPTY and (len(data) != 4 or tkl):
        raise ValueError("empty message with content")
    number = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        if byte == _PAYLOAD_MARKER:
            if pos == len(data):
                raise ValueError("payload marker without payload")
            msg.payload = bytes(data[pos:])
            break
        delta, pos = _ext(data, pos, byte >> 4)
        length, pos = _ext(data, pos, byte & 0x0F)
        if pos + length > len(data):
            raise ValueError("truncated option value")
        number += delta
        msg.options.append((number, bytes(data[pos:pos + length])))
        pos += length
    return msg
