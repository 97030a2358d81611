"""The client of history.eventplane.io/v1's integrity paths (api/integrity.py): verify and
replay over either transport (Client.query), export (a streamed NDJSON file) and import
over REST only: a whole log is a stream, not one NATS request and its answer.

Used by epctl's verify, export, import and replay commands; errors are the Status
classes, as everywhere in the client.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .client import Client
from .rest import RestTransport, _body, _unreachable
from .status import error_from_status

PREFIX = "/apis/history.eventplane.io/v1"


def rest_of(client: Client, command: str) -> RestTransport:
    rest = getattr(client.transport, "rest", client.transport)  # a hybrid transport's REST half
    if not isinstance(rest, RestTransport):
        raise ValueError(f"{command} works over REST only (use --via rest): a whole log is a stream, "
                         "not one NATS request and its answer")
    return rest


async def verify(client: Client, *, start: int | None = None, end: int | None = None) -> dict[str, Any]:
    """ChainVerification of positions start..end (default: the whole log)."""
    return await client.query("verify", {"from": start, "to": end})


async def replay(client: Client, to: str, *, controller: str | None = None) -> dict[str, Any]:
    """ReplayDiff: the objects as they were at `to` (RV, RFC 3339 time or -10m) against live state."""
    return await client.query("replay", {"to": to, "controller": controller})


async def export_lines(client: Client, params: dict[str, str]) -> AsyncIterator[bytes]:
    """The export file's lines as the server streams them (no total timeout: a big log takes long)."""
    t = rest_of(client, "export")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.timeout, sock_read=t.timeout)
    try:
        response = await t.session().get(f"{PREFIX}/export", params=params, timeout=timeout, **t._tls_name())
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _unreachable(t.access.server, exc) from exc
    async with response:
        if response.status >= 400:
            raise error_from_status(await _body(response), code=response.status)
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if buffer:
            yield buffer


async def post_file(client: Client, path: str, data: Any) -> dict[str, Any]:
    t = rest_of(client, path)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.timeout)
    try:
        async with t.session().post(f"{PREFIX}/{path}", data=data, timeout=timeout,
                                    headers={"Content-Type": "application/x-ndjson"}, **t._tls_name()) as response:
            value = await _body(response)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _unreachable(t.access.server, exc) from exc
    if response.status >= 400:
        raise error_from_status(value, code=response.status)
    return value
