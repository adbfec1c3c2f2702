"""CBOR (RFC 8949) for the subset Replenish uses.

Encodes uint, negint, bytes, text, array, map, tag, true/false/null with the
deterministic shortest form (definite lengths, map keys sorted by their encoding).
Decodes the same subset from any definite-length encoding; anything else
(truncated input, floats, indefinite lengths, trailing bytes, nesting deeper
than _MAX_DEPTH) raises ValueError.
"""

from micropython import const

_MAX_DEPTH = const(8)
_MT_UINT = const(0)
_MT_NEGINT = const(1)
_MT_BYTES = const(2)
_MT_TEXT = const(3)
_MT_ARRAY = const(4)
_MT_MAP = const(5)
_MT_TAG = const(6)
_MT_SIMPLE = const(7)


class Tag:
    """A tagged CBOR value (e.g. Tag(17, [...]) for COSE_Mac0)."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(mt | 26)
        out.extend(n.to_bytes(4, "big"))
    elif n < 0x10000000000000000:
        out.append(mt | 27)
        out.extend(n.to_bytes(8, "big"))
    else:
        raise ValueError("int too large for CBOR")


def head(major, n):
    """The encoded head (major type + argument) alone, as bytes."""
    out = bytearray()
    _head(out, major, n)
    return bytes(out)


def encode_into(out, value, depth=0):
    """Append the deterministic encoding of value to the bytearray out."""
    if depth > _MAX_DEPTH:
        raise ValueError("CBOR nesting too deep")
    if value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, int):
        if value >= 0:
            _head(out, _MT_UINT, value)
        else:
            _head(out, _MT_NEGINT, -1 - value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _head(out, _MT_BYTES, len(value))
        out.extend(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _head(out, _MT_TEXT, len(raw))
        out.extend(raw)
    elif isinstance(value, (list, tuple)):
        _head(out, _MT_ARRAY, len(value))
        for item in value:
            encode_into(out, item, depth + 1)
    elif isinstance(value, dict):
        _head(out, _MT_MAP, len(value))
        items = []
        for k, v in value.items():
            key_buf = bytearray()
            encode_into(key_buf, k, depth + 1)
            items.append((len(key_buf), bytes(key_buf), v))
        items.sort(key=lambda item: (item[0], item[1]))
        for _n, key_bytes, v in items:
            out.extend(key_bytes)
            encode_into(out, v, depth + 1)
    elif isinstance(value, Tag):
        _head(out, _MT_TAG, value.tag)
        encode_into(out, value.value, depth + 1)
    else:
        raise TypeError("cannot encode %s as CBOR" % type(value))


def encode(value):
    out = bytearray()
    encode_into(out, value)
    return bytes(out)


def _arg(buf, pos, info):
    """Read the argument of a head whose additional info is info; return (n, pos)."""
    if info < 24:
        return info, pos
    if info > 27:
        raise ValueError("unsupported CBOR additional info")
    size = 1 << (info - 24)
    end = pos + size
    if end > len(buf):
        raise ValueError("truncated CBOR")
    return int.from_bytes(buf[pos:end], "big"), end


def _item(buf, pos, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("CBOR nesting too deep")
    if pos >= len(buf):
        raise ValueError("truncated CBOR")
    ib = buf[pos]
    major = ib >> 5
    info = ib & 0x1F
    pos += 1
    if major == _MT_SIMPLE:
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 22:
            return None, pos
        raise ValueError("unsupported CBOR simple value or float")
    n, pos = _arg(buf, pos, info)
    if major == _MT_UINT:
        return n, pos
    if major == _MT_NEGINT:
        return -1 - n, pos
    if major == _MT_BYTES or major == _MT_TEXT:
        end = pos + n
        if end > len(buf):
            raise ValueError("truncated CBOR")
        raw = bytes(buf[pos:end])
        if major == _MT_TEXT:
            return raw.decode("utf-8"), end  # UnicodeError is a ValueError
        return raw, end
    if major == _MT_ARRAY:
        if n > len(buf) - pos:  # every item takes at least one byte
            raise ValueError("truncated CBOR")
        items = []
        for _ in range(n):
            value, pos = _item(buf, pos, depth + 1)
            items.append(value)
        return items, pos
    if major == _MT_MAP:
        if 2 * n > len(buf) - pos:
            raise ValueError("truncated CBOR")
        result = {}
        for _ in range(n):
            key, pos = _item(buf, pos, depth + 1)
            value, pos = _item(buf, pos, depth + 1)
            if isinstance(key, (list, dict, Tag)):
                raise ValueError("unsupported CBOR map key")
            if key in result:
                raise ValueError("duplicate CBOR map key")
            result[key] = value
        return result, pos
    # major 6: tag
    value, pos = _item(buf, pos, depth + 1)
    return Tag(n, value), pos


def decode(data):
    """Decode exactly one CBOR item filling data; ValueError on anything else."""
    value, pos = _item(data, 0, 0)
    if pos != len(data):
        raise ValueError("trailing bytes after CBOR item")
    return value
