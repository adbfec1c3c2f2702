"""Where outbound calls may go (docs/security.md, "Outbound calls").

Household webhooks and the merchant URL are written by people the backend does not
fully trust, and the backend sits inside someone's network: left alone, a webhook URL
reaches the cloud metadata service, the database or an admin page on loopback (blind
SSRF). So every outbound URL is resolved and each address it resolves to is checked:
loopback, private, shared (CGNAT), link-local, multicast, reserved and unspecified
addresses are refused unless they fall in `REPLENISH_WEBHOOK_ALLOW_NETWORKS`. Addresses
that embed an IPv4 address (IPv4-mapped, 6to4, Teredo) are judged by that address too.

The caller connects to the addresses that were checked (`Destination.addresses`), never
to the name again, so a name that resolves to a public address when checked and to
127.0.0.1 a moment later (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from backend.errors import ConfigError, ReplenishError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_SCHEMES = {"http": 80, "https": 443}


class AddressRefused(ReplenishError):
    """An outbound URL that the policy refuses (HTTP 400 where a user set it)."""


@dataclass(frozen=True)
class Destination:
    """A checked URL: connect to `addresses` (in order), send `Host: host[:port]`."""

    scheme: str
    host: str
    port: int
    path: str  # with the query, never empty
    addresses: tuple[str, ...]

    @property
    def key(self) -> str:
        """What concurrency limits and the circuit breaker count by."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _SCHEMES[self.scheme] else f"{host}:{self.port}"


def parse_networks(cidrs) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as err:
        raise ConfigError(f"REPLENISH_WEBHOOK_ALLOW_NETWORKS: {err}") from None


_KINDS = (("loopback", "a loopback"), ("link_local", "a link-local"),
          ("multicast", "a multicast"), ("unspecified", "an unspecified"),
          ("reserved", "a reserved"), ("private", "a private"))


def why_refused(address: Address) -> str | None:
    """None if `address` is a public unicast address, else what it is ("a loopback
    address", ...)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            address.teredo[1] if address.teredo else None)
        if embedded is not None and (why := why_refused(embedded)):
            return f"{why} (embedded as {embedded})"
        if address.ipv4_mapped is not None:
            return None
    for attribute, phrase in _KINDS:
        if getattr(address, f"is_{attribute}"):
            return f"{phrase} address"
    if not address.is_global:  # 100.64.0.0/10 (shared, CGNAT) and the like
        return "an address that is not globally reachable"
    return None


def key_of(url: str) -> str:
    """The destination key of a URL without resolving it ("" if it does not parse)."""
    try:
        parts = urlsplit(url)
        port = parts.port or _SCHEMES.get(parts.scheme, 0)
    except ValueError:
        return ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


class AddressPolicy:
    """Checks outbound URLs. `allow` is the allow-list of networks (CIDR strings)."""

    def __init__(self, allow=(), resolve=socket.getaddrinfo):
        self.allow = parse_networks(allow)
        self._resolve = resolve

    def _allowed(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self.allow)

    def check(self, url: str, what: str = "URL") -> Destination:
        """Parse and resolve `url`; raise AddressRefused unless every address it
        resolves to is allowed. The message names the address, never the URL's path
        or query (they may carry a token)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise AddressRefused(f"{what} is not a valid URL: {err}") from None
        if parts.scheme not in _SCHEMES:
            raise AddressRefused(f"{what} must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise AddressRefused(f"{what} must not carry a user name or password")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise AddressRefused(f"{what} has no host")
        port = port or _SCHEMES[parts.scheme]
        try:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            raise AddressRefused(f"{what}: {host} does not resolve ({err})") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not self._allowed(address) and (why := why_refused(address)):
                raise AddressRefused(
                    f"{what}: {host} resolves to {address}, {why}; outbound "
                    f"calls go only to public addresses unless the operator allows the "
                    f"network (REPLENISH_WEBHOOK_ALLOW_NETWORKS)")
            if str(address) not in addresses:
                addresses.append(str(address))
        if not addresses:
            raise AddressRefused(f"{what}: {host} does not resolve")
        path = parts.path or "/"
        return Destination(parts.scheme, host.lower(), port,
                           f"{path}?{parts.query}" if parts.query else path,
                           tuple(addresses))
