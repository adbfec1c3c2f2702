"""pycose, the independent COSE implementation the tests hold our codecs against.

pycose 1.1 expects cbor2 5's lists and dicts; cbor2 6 decodes arrays as tuples and
maps as frozendicts. This wrapper thaws the outer structure so pycose's own
verification code runs unchanged.
"""

import cbor2
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message


def decode_mac0(data: bytes, key: bytes) -> Mac0Message:
    outer = cbor2.loads(data)
    assert isinstance(outer, cbor2.CBORTag) and outer.tag == 17, "not a tagged COSE_Mac0"
    protected, unprotected, payload, tag = outer.value
    message = Mac0Message.from_cose_obj([protected, dict(unprotected), payload, tag], True)
    message.key = SymmetricKey(k=key)
    return message
