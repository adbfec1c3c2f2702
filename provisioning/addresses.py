"""Where provisioned devices and their labels point: validated, never guessed silently.

A batch writes two addresses that outlive it: the CoAP server in every device's
identity (flashed, then out of reach) and the claim URL in every label's QR code
(printed). Both default to the deployment's public settings, `REPLENISH_PUBLIC_COAP`
and `REPLENISH_PUBLIC_URL`; without them they fall back to this host (loopback, with
`REPLENISH_COAP_PORT` and the web port), and the batch warns, since a device given a
loopback address reaches no one once it leaves the bench.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from backend.config import Settings
from backend.errors import ReplenishError

_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_WILDCARDS = ("0.0.0.0", "::")


class AddressError(ReplenishError):
    """An address a batch would write into devices or labels is not usable."""


@dataclass(frozen=True)
class Targets:
    coap_host: str
    coap_port: int
    claim_url_base: str

    def loopback_warnings(self) -> list[str]:
        out = []
        if is_loopback(self.coap_host):
            out.append(f"devices will send their events to {self.coap_host}:{self.coap_port},"
                       " a loopback address: only a device on this very host reaches it. "
                       "Set REPLENISH_PUBLIC_COAP (or --coap-host) to the server's public "
                       "address")
        host = urlsplit(self.claim_url_base).hostname or ""
        if is_loopback(host):
            out.append(f"label QR codes will open {self.claim_url_base}…, a loopback address:"
                       " a household's phone does not reach it. Set REPLENISH_PUBLIC_URL "
                       "(or --claim-url-base)")
        return out


def is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, what: str) -> str:
    """An IP address or a DNS name a device can resolve; never a wildcard."""
    bare = host.strip()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    if bare in _WILDCARDS:
        raise AddressError(f"{what} {host!r} is the 'any address' of a listener, not an "
                           "address a device can reach: give the server's public address")
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(bare) or bare.replace(".", "").isdigit():
        raise AddressError(f"{what} {host!r} is neither an IP address nor a host name")
    return bare


def check_port(port: int, what: str) -> int:
    if not 1 <= port <= 65535:
        raise AddressError(f"{what} {port} is not a port (1-65535)")
    return port


def parse_host_port(text: str, default_port: int, what: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`."""
    text = text.strip()
    if match := re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text):
        host, port = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port = text, None
    if port is not None and not port.isdigit():
        raise AddressError(f"{what} {text!r}: the port must be a number")
    return check_host(host, what), check_port(int(port) if port else default_port, what)


def check_claim_url_base(base: str, what: str = "claim URL") -> str:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressError(f"{what} {base!r} must be an http:// or https:// URL with a host")
    check_host(parts.hostname, what)
    if parts.port is not None:
        check_port(parts.port, what)
    if parts.query or parts.fragment:
        raise AddressError(f"{what} {base!r}: no query or fragment (the claim code follows "
                           "the path)")
    return base if base.endswith("/") else base + "/"


def targets(settings: Settings, coap_host: str | None = None, coap_port: int | None = None,
            claim_url_base: str | None = None) -> Targets:
    """The addresses a batch writes: flags first, then the public settings, then this
    host (loopback: see `Targets.loopback_warnings`)."""
    if settings.public_coap:
        host, port = parse_host_port(settings.public_coap, settings.coap_port or 5683,
                                     "REPLENISH_PUBLIC_COAP")
    else:
        host, port = "127.0.0.1", settings.coap_port or 5683
    if coap_host is not None:
        host = check_host(coap_host, "--coap-host")
    if coap_port is not None:
        port = check_port(coap_port, "--coap-port")
    if claim_url_base is not None:
        base = check_claim_url_base(claim_url_base, "--claim-url-base")
    elif settings.public_url:
        base = check_claim_url_base(settings.public_url.rstrip("/") + "/claim/",
                                    "REPLENISH_PUBLIC_URL")
    else:
        web = "127.0.0.1" if settings.http_host in _WILDCARDS else settings.http_host
        web = f"[{web}]" if ":" in web else web
        base = f"http://{web}:{settings.http_port or 8000}/claim/"
    return Targets(host, port, base)
