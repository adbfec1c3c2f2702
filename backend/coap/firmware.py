"""GET /fw/<release> (the signed manifest) and /fw/<release>/<path> (a module), Block2.

Block-wise transfer (RFC 7959) is done here, statelessly: each request names its
block (number and size) and gets that slice of the stored bytes, so a device resumes a
file after a reboot from any block, on any ingest process. (aiocoap's own Block2 cache
keys on the client's address and forgets after a minute and a half.)

Integrity does not rest on this resource: devices check the manifest's signature and
every digest. Access does: the query carries the device id and a MAC over the release
id under the device key (`d=<id hex>&t=<hex>`, firmware/replenish/ota.token), so only a
provisioned, active device of the release's model downloads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from backend.accounts.keys import Keyring
from backend.errors import ConfigError
from backend.storage.models import Device, Release, ReleaseFile

log = logging.getLogger(__name__)

FW_PATH = "fw"
_MAX_SZX = 6  # 1024-byte blocks: one block and its headers fit the device's datagram buffer
_CONTENT_FORMAT_CBOR = 60
_CONTENT_FORMAT_OCTETS = 42
_AUTH_TTL_S = 300.0
_AUTH_CACHE = 4096
_CONTENT_CACHE_BYTES = 8 << 20


def fetch_token(key: bytes, release_id: int) -> str:
    """What a device puts in t=: HMAC-SHA-256(key, "replenish-fw:<id>"), 16 bytes, hex."""
    return hmac.new(key, f"replenish-fw:{release_id}".encode(), hashlib.sha256).digest()[:16].hex()


class _Refusal(Exception):
    def __init__(self, code: Code, text: str):
        super().__init__(text)
        self.code = code


def _reader(sessions: sessionmaker) -> sessionmaker:
    """Read-only sessions on the same engine: plain BEGIN on SQLite, never the write
    lock, whichever factory (reader or writer) build_site hands in."""
    bind = sessions.kw["bind"].execution_options(sqlite_begin="deferred")
    return sessionmaker(bind, expire_on_commit=False)


class FirmwareResource(resource.Resource, resource.PathCapable):
    def __init__(self, sessions: sessionmaker, keyring: Keyring):
        super().__init__()
        self._sessions = _reader(sessions)
        self._keyring = keyring
        self._authorized: OrderedDict[tuple[str, int, str], float] = OrderedDict()
        self._content: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._content_bytes = 0
        self.blocks_served = 0

    async def needs_blockwise_assembly(self, request):
        return False  # Block2 is sliced here, per request

    def get_link_description(self):
        return None  # not listed: one URI per release and file

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        path = list(request.opt.uri_path)
        query = dict(q.split("=", 1) for q in request.opt.uri_query if "=" in q)
        try:
            if not path or not path[0].isdigit():
                raise _Refusal(Code.NOT_FOUND, "no such release")
            release_id = int(path[0])
            rel = "/".join(path[1:])
            data = await asyncio.to_thread(self._load, release_id, rel,
                                           query.get("d", ""), query.get("t", ""))
        except _Refusal as refusal:
            log.warning("refused firmware download /fw/%s from %s: %s", "/".join(path),
                        request.remote.hostinfo, refusal)
            return aiocoap.Message(code=refusal.code, payload=str(refusal).encode(),
                                   content_format=0)
        block = request.opt.block2
        szx = min(block.size_exponent, _MAX_SZX) if block else _MAX_SZX
        size = 1 << (szx + 4)
        number = (block.block_number * block.size if block else 0) // size
        start = number * size
        if start > len(data) or (start == len(data) and start):
            return aiocoap.Message(code=Code.BAD_OPTION, payload=b"block out of range",
                                   content_format=0)
        more = start + size < len(data)
        self.blocks_served += 1
        response = aiocoap.Message(
            code=Code.CONTENT, payload=data[start:start + size],
            content_format=_CONTENT_FORMAT_OCTETS if rel else _CONTENT_FORMAT_CBOR)
        response.opt.block2 = BlockOption.BlockwiseTuple(number, more, szx)
        return response

    # -- in a worker thread ----------------------------------------------------------
    def _load(self, release_id: int, rel: str, device_hex: str, tag: str) -> bytes:
        self._authorize(release_id, device_hex, tag)
        key = (release_id, rel)
        data = self._content.get(key)
        if data is not None:
            self._content.move_to_end(key)
            return data
        with self._sessions() as session:
            if rel:
                data = session.scalars(select(ReleaseFile.content).where(
                    ReleaseFile.release_id == release_id, ReleaseFile.path == rel)).first()
            else:
                data = session.scalars(select(Release.manifest).where(
                    Release.id == release_id)).first()
        if data is None:
            raise _Refusal(Code.NOT_FOUND, "no such file in this release")
        self._content[key] = data
        self._content_bytes += len(data)
        while self._content_bytes > _CONTENT_CACHE_BYTES and len(self._content) > 1:
            _, dropped = self._content.popitem(last=False)
            self._content_bytes -= len(dropped)
        return data

    def _authorize(self, release_id: int, device_hex: str, tag: str) -> None:
        now = time.monotonic()
        cached = self._authorized.get((device_hex, release_id, tag))
        if cached is not None and cached > now:
            return
        with self._sessions() as session:
            device = session.scalars(select(Device).where(
                Device.device_id == device_hex)).one_or_none()
            release = session.get(Release, release_id)
            if device is None:
                raise _Refusal(Code.UNAUTHORIZED, "unknown device or bad token")
            try:
                key = self._keyring.unwrap(device.device_id, device.wrapped_key)
            except ConfigError as err:
                raise _Refusal(Code.SERVICE_UNAVAILABLE, "server key error") from err
            if not hmac.compare_digest(fetch_token(key, release_id), tag):
                raise _Refusal(Code.UNAUTHORIZED, "unknown device or bad token")
            if device.status != "active":
                raise _Refusal(Code.FORBIDDEN, "device revoked")
            if release is None:
                raise _Refusal(Code.NOT_FOUND, "no such release")
            if release.model != device.model:
                raise _Refusal(Code.FORBIDDEN, "release is for another model")
        self._authorized[(device_hex, release_id, tag)] = now + _AUTH_TTL_S
        while len(self._authorized) > _AUTH_CACHE:
            self._authorized.popitem(last=False)
