"""The per-device bundle written by provisioning: <bundle>/identity.json."""

import binascii
import json

from replenish.protocol import DEVICE_ID_BYTES, KEY_BYTES

IDENTITY_FILE = "identity.json"
BOARD_FILE = "board.json"


class Identity:
    def __init__(self, device_id, key, model, coap_host, coap_port, fw, board=None,
                 setup_secret=None, release_key=None):
        self.device_id = device_id  # 8 bytes, the COSE kid
        self.key = key  # 32 bytes; never print
        self.model = model
        self.coap_host = coap_host
        self.coap_port = coap_port
        self.fw = fw
        self.board = board
        self.setup_secret = setup_secret  # Wi-Fi setup proof of possession; never print
        self.release_key = release_key  # manufacturer's Ed25519 public key (32 bytes)

    @property
    def device_hex(self):
        return binascii.hexlify(self.device_id).decode()

    def __repr__(self):
        return "<Identity %s %s>" % (self.device_hex, self.model)


def _hex(fields, name, size):
    value = fields.get(name)
    try:
        raw = binascii.unhexlify(value)
    except (TypeError, ValueError):
        raise ValueError("%s must be hex" % name)
    if len(raw) != size:
        raise ValueError("%s must be %d bytes" % (name, size))
    return raw


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def parse(fields, board=None):
    if not isinstance(fields, dict):
        raise ValueError("identity must be a JSON object")
    port = fields.get("coap_port", 5683)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("coap_port must be a port number")
    return Identity(
        _hex(fields, "device_id", DEVICE_ID_BYTES),
        _hex(fields, "key", KEY_BYTES),
        fields.get("model", "button"),
        fields.get("coap_host", "127.0.0.1"),
        port,
        fields.get("fw", "0.0.0"),
        board,
        fields.get("setup_secret"),
        _hex(fields, "release_key", 32) if fields.get("release_key") else None,
    )


def load(bundle_dir):
    """Identity from bundle_dir/identity.json (+ board.json when present)."""
    board = None
    try:
        board = _read_json(bundle_dir + "/" + BOARD_FILE)
    except OSError:
        pass
    return parse(_read_json(bundle_dir + "/" + IDENTITY_FILE), board)
