"""The aiocoap site: thin resources that hand bytes to the pipeline and answer."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from sqlalchemy.orm import sessionmaker

from backend import protocol
from backend.accounts.keys import Keyring
from backend.coap.amplification import GuardedSite
from backend.coap.event_path import OneDatagramResource
from backend.coap.firmware import FW_PATH, FirmwareResource
from backend.coap.ratelimit import Networks, RateLimiter, source_key
from backend.coap.refusals import refusal
from backend.config import DEFAULTS
from backend.ingest.pipeline import Pipeline
from backend.ingest.reply import Reply
from backend.protocol import Result

log = logging.getLogger(__name__)


class EventResource(OneDatagramResource):
    """POST /ev: one signed event in, one (MAC'd) answer out, after the commit."""

    rt = "replenish.event"
    ct = protocol.CONTENT_FORMAT_COSE_MAC0

    def __init__(self, pipeline: Pipeline, guard: OverloadGuard | None = None,
                 limiter: RateLimiter | None = None):
        super().__init__()
        self._pipeline = pipeline
        self._guard = guard or OverloadGuard(pipeline)
        self._limiter = limiter or RateLimiter()

    def get_link_description(self):
        return {**super().get_link_description(), "ct": str(self.ct)}

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        if (limited := self._limiter.check(request)) is not None:  # coap/ratelimit.py
            return limited
        if request.opt.block1 is not None or request.opt.block2 is not None:  # one datagram
            log.warning("refused block-wise event from %s", request.remote.hostinfo)
            return refusal(Result.TOO_LARGE, "an event is one datagram, not block-wise")
        if request.opt.content_format != protocol.CONTENT_FORMAT_COSE_MAC0:
            log.warning("refused event from %s: content-format %s", request.remote.hostinfo,
                        request.opt.content_format)
            return refusal(Result.UNSUPPORTED_FORMAT, "content-format must be 17 (cose-mac0)")
        if len(request.payload) > protocol.MAX_PAYLOAD_BYTES:
            log.warning("refused event from %s: %d bytes", request.remote.hostinfo,
                        len(request.payload))
            return refusal(Result.TOO_LARGE, f"event over {protocol.MAX_PAYLOAD_BYTES} bytes")
        if self._guard.overloaded():
            return self._guard.shed(request)
        reply = await self._pipeline.submit(request.payload)
        self._limiter.charge(request, reply.authenticated)
        if not reply.authenticated:
            return refusal(reply.result, reply.payload.decode())
        return _answer(reply)


# An answer's code and Content-Format option, built once: `Message(...,
# content_format=17)` makes a new option object per answer, 2.5 of the 4 us it took.
# aiocoap only reads (encodes) the options of a message it sends, so one object serves
# every answer.
_ANSWER_CODES = {result: Code(int(result)) for result in Result}
_COSE_MAC0_FORMAT = OptionNumber.CONTENT_FORMAT.create_option(
    value=protocol.CONTENT_FORMAT_COSE_MAC0)


def _answer(reply: Reply) -> aiocoap.Message:
    """The MAC'd answer to an authenticated event."""
    message = aiocoap.Message(code=_ANSWER_CODES[reply.result], payload=reply.payload)
    message.opt.add_option(_COSE_MAC0_FORMAT)
    return message


@dataclass(frozen=True)
class OverloadPolicy:
    """When to shed load instead of queueing it (REPLENISH_OVERLOAD_*; README)."""

    max_waiting: int = DEFAULTS.overload_max_waiting  # events waiting for the writer
    socket_fill: float = 0.5  # share of the UDP receive buffer in use
    # Asked for the CoAP socket (the kernel caps it at net.core.rmem_max). Linux's
    # default, 208 KiB, holds only about a hundred datagrams on loopback (each is
    # charged its whole buffer): half of it tripped the guard at ordinary bursts.
    receive_buffer_bytes: int = 1 << 20
    retry_after_s: int = DEFAULTS.overload_retry_s  # Max-Age of the 5.03
    log_every: int = 100  # one warning per this many shed events, not one each


class OverloadGuard:
    """Decides when an event is answered 5.03 with Max-Age at once instead of queued.

    Two signs of overload: more than `max_waiting` events waiting for the writer (the
    database is the bottleneck), or the CoAP socket's receive buffer more than
    `socket_fill` full (the event loop is; past 100 % the kernel drops datagrams
    silently). Shedding reads and writes nothing, and its answer is smaller than any
    event (no amplification); devices keep the event and retry after Max-Age, which
    takes load off instead of adding retransmissions.
    """

    _SAMPLE_S = 0.01

    def __init__(self, pipeline: Pipeline, policy: OverloadPolicy | None = None):
        self._pipeline = pipeline
        self.policy = policy or OverloadPolicy()
        self._socket = None
        self._socket_full = False
        self.shed_count = 0

    def watch_socket(self, sock) -> None:
        """Enlarge `sock`'s receive buffer and start sampling its receive queue (Linux
        SO_MEMINFO) on the running loop."""
        self._socket = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                            self.policy.receive_buffer_bytes)
        except OSError as err:
            log.warning("could not set the CoAP receive buffer to %d bytes: %s",
                        self.policy.receive_buffer_bytes, err)
        self._sample(asyncio.get_running_loop())

    def _sample(self, loop) -> None:
        if self._socket is None or self._socket.fileno() < 0:
            return
        try:
            used, size = struct.unpack_from("2I", self._socket.getsockopt(
                socket.SOL_SOCKET, _SO_MEMINFO, 36))
        except OSError:
            return  # not Linux, or the socket is gone: only the writer backlog counts
        self._socket_full = used > size * self.policy.socket_fill
        loop.call_later(self._SAMPLE_S, self._sample, loop)

    def overloaded(self) -> bool:
        return self._socket_full or self._pipeline.waiting() >= self.policy.max_waiting

    def shed(self, request: aiocoap.Message) -> aiocoap.Message:
        self.shed_count += 1
        if self.shed_count % self.policy.log_every == 1:
            log.warning("overloaded (%d events waiting for the writer, receive buffer %s): "
                        "answered 5.03 Max-Age %d to %s; %d shed so far",
                        self._pipeline.waiting(),
                        "full" if self._socket_full else "ok", self.policy.retry_after_s,
                        request.remote.hostinfo, self.shed_count)
        return refusal(Result.UNAVAILABLE, "overloaded", self.policy.retry_after_s)


_SO_MEMINFO = 55  # Linux: receive-queue bytes in use, receive buffer size, ...


class LocalDiscovery(resource.WKCResource):
    """/.well-known/core for the networks in `allowed` only (default: this host).

    Its answer (the link format) is several times bigger than the GET that asks for
    it, and the GET is unauthenticated: answered to anyone, it would turn forged-source
    requests into amplified traffic at a victim. Devices never need it (/ev is fixed by
    the protocol); an operator asks from the host. Everyone else gets an empty 4.03,
    which is never bigger than the request."""

    def __init__(self, listgenerator, allowed: tuple[str, ...]):
        super().__init__(listgenerator)
        self._allowed = Networks(allowed)

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        if not self._allowed.holds(source_key(request.remote)):
            log.info("refused /.well-known/core to %s (not in REPLENISH_DISCOVERY_FROM)",
                     request.remote.hostinfo)
            return refusal(Code.FORBIDDEN)
        return await super().render_get(request)


def build_site(pipeline: Pipeline, sessions: sessionmaker, keyring: Keyring,
               guard: OverloadGuard | None = None,
               limiter: RateLimiter | None = None,
               discovery_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128"),
               ) -> resource.Site:
    """/ev goes to the writer (`pipeline`); /fw reads releases through `sessions`.
    Every request passes the rate limits and no refusal is bigger than its request
    (coap/ratelimit.py, coap/amplification.py)."""
    limiter = limiter or RateLimiter()
    site = GuardedSite(limiter)
    site.add_resource([".well-known", "core"],
                      LocalDiscovery(site.get_resources_as_linkheader, discovery_from))
    site.add_resource([protocol.EVENT_PATH], EventResource(pipeline, guard, limiter))
    site.add_resource([FW_PATH], FirmwareResource(sessions, keyring))
    return site
