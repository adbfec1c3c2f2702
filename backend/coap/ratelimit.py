"""Per-source and per-device rate limits for POST /ev (token buckets, bounded memory).

- Per source: every request takes a token from its source's bucket before anything
  else is done with it (no parsing, no database, no MAC). A source is an IPv4 address
  or an IPv6 /64 (one subscriber usually holds a whole /64; ports are free to vary).
- Per device: an event that *authenticated* takes a token from its device's bucket
  after it was decided; a device whose bucket is empty is refused before its next event
  reaches the writer. Only authenticated events count, so nobody can spend a device's
  tokens by sending garbage under its kid (the kid is read unauthenticated).
- Both tables are LRU-bounded (`max_tracked` entries each): a flood from many spoofed
  sources evicts old buckets instead of growing memory; an evicted source starts again
  with a full bucket, which is the price of the bound.
- Networks in `exempt` (default: loopback) are not limited: tests, `make bench` and a
  gateway on the same host drive thousands of events per second from one address.

The refusal is 5.03 with Max-Age = seconds until the bucket has a token again, and
no payload: devices already back off on it (they keep the event and send it again
after Max-Age, docs/firmware.md), and it is smaller than any request, so a refusal
costs a spoofing attacker more bytes than it costs us (4.29 Too Many Requests, RFC
8516, would need firmware support for no gain). docs/security.md.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiocoap

from backend import protocol
from backend.coap.refusals import refusal
from backend.config import DEFAULTS
from backend.errors import MalformedEvent

# The canonical COSE_Mac0 head up to the kid: tag 17, array(4), bstr(3) {1: 5},
# map(1) {4: bstr(8) ...}. Devices and encode_event write exactly this; anything else
# is parsed (after the source check has paid for it).
_CANONICAL_HEAD = bytes.fromhex("d18443a10105a10448")
_KID_AT = len(_CANONICAL_HEAD)


@dataclass(frozen=True)
class RateLimitPolicy:
    """REPLENISH_RATE_* (README). A rate of 0 turns that limit off."""

    source_per_s: float = DEFAULTS.rate_source_per_s
    source_burst: float = DEFAULTS.rate_source_burst
    device_per_s: float = DEFAULTS.rate_device_per_s
    device_burst: float = DEFAULTS.rate_device_burst
    max_tracked: int = DEFAULTS.rate_tracked
    exempt: tuple[str, ...] = DEFAULTS.rate_exempt


def limiter_for(settings) -> RateLimiter:
    """The limiter the settings (REPLENISH_RATE_*) describe."""
    return RateLimiter(RateLimitPolicy(
        source_per_s=settings.rate_source_per_s, source_burst=settings.rate_source_burst,
        device_per_s=settings.rate_device_per_s, device_burst=settings.rate_device_burst,
        max_tracked=settings.rate_tracked, exempt=tuple(settings.rate_exempt)))


class TokenBuckets:
    """Token buckets by key in an LRU-bounded table."""

    def __init__(self, per_s: float, burst: float, max_tracked: int, clock=time.monotonic):
        self.per_s, self.burst, self.max_tracked = per_s, burst, max_tracked
        self._clock = clock
        self._buckets: OrderedDict = OrderedDict()  # key -> [tokens, last refill]

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key) -> list:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.burst, now]
            if len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.per_s)
            bucket[1] = now
        return bucket

    def wait_s(self, key) -> float:
        """0 when `key` has a token now, else the seconds until it has one."""
        tokens = self._bucket(key)[0]
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_s

    def take(self, key) -> float:
        """Take a token: 0 when there was one, else the seconds until there is."""
        bucket = self._bucket(key)
        if bucket[0] >= 1:
            bucket[0] -= 1
            return 0.0
        return (1 - bucket[0]) / self.per_s


class RateLimiter:
    def __init__(self, policy: RateLimitPolicy | None = None, clock=time.monotonic):
        self.policy = p = policy or RateLimitPolicy()
        self.sources = TokenBuckets(p.source_per_s, p.source_burst, p.max_tracked, clock)
        self.devices = TokenBuckets(p.device_per_s, p.device_burst, p.max_tracked, clock)
        self._exempt = Networks(p.exempt)
        self._exempt_hosts: dict[str | None, bool] = {}  # sockaddr host -> in `exempt`
        self.refused = {"source": 0, "device": 0}

    def check(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """The refusal for `request`, or None when it may go on (takes a source token)."""
        if self._is_exempt(request.remote):
            return None
        source = source_key(request.remote)
        if self.policy.source_per_s > 0:
            wait = self.sources.take(_network_of(source))
            if wait:
                return self._refuse("source", wait)
        if self.policy.device_per_s > 0 and (kid := kid_of(request.payload)) is not None:
            wait = self.devices.wait_s(kid)
            if wait:
                return self._refuse("device", wait)
        return None

    def charge(self, request: aiocoap.Message, authenticated: bool) -> None:
        """After the decision: an authenticated event takes its device's token."""
        if not authenticated or self.policy.device_per_s <= 0:
            return
        if self._is_exempt(request.remote):
            return
        if (kid := kid_of(request.payload)) is not None:
            self.devices.take(kid)

    def _is_exempt(self, remote) -> bool:
        """Whether `remote` is in `exempt`, remembered per address string: asked twice
        per event (check, charge), testing an address against the networks was most of
        the limiter's CPU. Bounded like the buckets (emptied when full)."""
        host = _host_of(remote)
        exempt = self._exempt_hosts.get(host)
        if exempt is None:
            if len(self._exempt_hosts) >= self.policy.max_tracked:
                self._exempt_hosts.clear()
            exempt = self._exempt_hosts[host] = self._exempt.holds(source_key(remote))
        return exempt

    def _refuse(self, which: str, wait_s: float) -> aiocoap.Message:
        self.refused[which] += 1
        return refusal(protocol.Result.UNAVAILABLE, max_age_s=max(1, math.ceil(wait_s)))


def kid_of(payload: bytes) -> bytes | None:
    """The (unauthenticated) kid of an event: a slice for the canonical encoding, a
    parse otherwise; None when there is none (or the payload is over the size limit)."""
    if len(payload) > protocol.MAX_PAYLOAD_BYTES:
        return None
    if payload[:_KID_AT] == _CANONICAL_HEAD:
        return bytes(payload[_KID_AT:_KID_AT + protocol.DEVICE_ID_BYTES])
    try:
        return protocol.parse_signed_event(payload).kid
    except MalformedEvent:
        return None


class Networks:
    """A set of IP networks (CIDR strings), asked about a `source_key` address."""

    def __init__(self, cidrs):
        self._networks = [ipaddress.ip_network(cidr) for cidr in cidrs]

    def holds(self, address) -> bool:
        return address is not None and any(address in net for net in self._networks)


def source_key(remote) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = _host_of(remote)
    return None if host is None else _parsed_address(host)


def _host_of(remote) -> str | None:
    """The address string of a remote's socket address (None when it has none)."""
    sockaddr = getattr(remote, "sockaddr", None)
    return sockaddr[0] if sockaddr else None


@functools.lru_cache(maxsize=4096)
def _parsed_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parsing an address string cost more than the rest of the rate limiter; a device
    sends from the same address again and again."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _network_of(address) -> int:
    """The bucket key, a small int: the IPv4 address, or the IPv6 /64 it is in (as a
    negative number, so the two never collide)."""
    if isinstance(address, ipaddress.IPv6Address):
        return -1 - (int(address) >> 64)
    return int(address)
