"""Loopback helpers: free ports, and a blocking CoAP request through real aiocoap."""

from __future__ import annotations

import asyncio
import socket

import aiocoap


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
