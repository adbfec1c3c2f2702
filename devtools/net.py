"""Loopback helpers: free ports, and a blocking CoAP request through real aiocoap."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import aiocoap


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LOWEST = 10_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_tcp_port_below_ephemeral() -> int:
    """A free TCP port on 127.0.0.1 below the kernel's range for port 0, where no other
    socket lands by binding port 0: for a port bound later by a program we do not
    hold it for (a simulated chip's firmware). A port probed free inside that range
    could be handed to another process's socket before the program binds it."""
    low = _ephemeral_low()
    if low - _LOWEST < 1000:  # no room below the range here: probe as before
        return free_tcp_port()
    for _ in range(100):
        port = random.randrange(_LOWEST, low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # someone's own fixed port: another one
            return port
    return free_tcp_port()


async def _requests(url: str, payloads: list[bytes], content_format: int | None):
    context = await aiocoap.Context.create_client_context()
    try:
        answers = []
        for payload in payloads:
            message = aiocoap.Message(code=aiocoap.POST, uri=url, payload=payload)
            if content_format is not None:
                message.opt.content_format = content_format
            answers.append(await asyncio.wait_for(context.request(message).response, 60))
        return answers
    finally:
        await context.shutdown()


def coap_post_all(url: str, payloads: list[bytes], content_format: int | None = 17):
    """POST each payload in turn (confirmable) and return aiocoap's responses."""
    return asyncio.run(_requests(url, payloads, content_format))


def coap_post(url: str, payload: bytes, content_format: int | None = 17):
    return coap_post_all(url, [payload], content_format)[0]


async def _each_from_own_port(url: str, payloads: list[bytes]):
    contexts = [await aiocoap.Context.create_client_context() for _ in payloads]
    try:
        requests = []
        for context, payload in zip(contexts, payloads):
            message = aiocoap.Message(code=aiocoap.POST, uri=url, payload=payload)
            message.opt.content_format = 17
            requests.append(asyncio.wait_for(context.request(message).response, 60))
        return list(await asyncio.gather(*requests))
    finally:
        for context in contexts:
            await context.shutdown()


def coap_post_each_from_own_port(url: str, payloads: list[bytes]):
    """POST each payload from its own client (its own source port), all at once;
    aiocoap's responses in order."""
    return asyncio.run(_each_from_own_port(url, payloads))


async def _get(url: str):
    context = await aiocoap.Context.create_client_context()
    try:
        request = aiocoap.Message(code=aiocoap.GET, uri=url)
        return await asyncio.wait_for(context.request(request).response, 60)
    finally:
        await context.shutdown()


def coap_get(url: str):
    return asyncio.run(_get(url))


def api(method: str, url: str, token: str | None = None, body: dict | None = None):
    """One JSON API call; returns (status, parsed body)."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())
