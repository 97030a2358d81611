"""Turning an HTTP request into a SPDY session (spdy.py), and the exec/attach streams of kubectl
before 1.30 on one.

Fed by podproxy.py (pods/exec and pods/attach with `Upgrade: SPDY/3.1`) and portforward.py
(pods/portforward, upgraded or tunnelled in a WebSocket); what they get is a `spdy.Session`
whose streams they read and write.

- `upgrade()`: 101 Switching Protocols with `Upgrade: SPDY/3.1` and the negotiated
  `X-Stream-Protocol-Version`; the connection's bytes from then on go to the session (aiohttp
  parses only WebSocket upgrades, so the session's reader is put in its place before the 101
  goes out). A session whose reader falls behind pauses the socket.
- `tunnel()`: a WebSocket whose subprotocol is `SPDY/3.1+<protocol>` (KEP-4006, kubectl ≥ 1.31's
  port-forward): SPDY's bytes travel in binary messages whose boundaries mean nothing.
- `SpdyExec`: remotecommand's streams (apimachinery's v2/v3/v4.channel.k8s.io over SPDY): the
  client opens `error`, then `stdin`, `stdout`, `stderr` and (v3+, with a TTY) `resize` as the
  query asked; they are collected (30 s, as the kubelet's streamCreationTimeout) and offered to
  podproxy's exec relay as a client like its WebSocket one: `output()`, `finish(status)`, and
  `input()` — stdin, its end, resizes. v4 writes the Status JSON on the error stream (Success too,
  as the kubelet does); v2/v3 write a failure's message as text.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from eventplane.objects import errors

from . import spdy

UPGRADE = "SPDY/3.1"
PROTOCOL_HEADER = "X-Stream-Protocol-Version"
TUNNEL_PREFIX = "SPDY/3.1+"
READ_LIMIT = 1 << 20          # bytes read from the socket and not yet parsed before it is paused
WRITE_LIMIT = 1 << 20         # bytes queued on the socket before a writer waits
STREAM_CREATION_TIMEOUT = 30.0
EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io")


def wants_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").strip().lower() == UPGRADE.lower() and \
        "upgrade" in request.headers.get("Connection", "").lower()


def negotiate(request: web.Request, supported: tuple[str, ...]) -> str:
    """The first protocol the client offers (X-Stream-Protocol-Version, in its order) that we serve;
    the kubelet's refusal otherwise."""
    offered = [p.strip() for h in request.headers.getall(PROTOCOL_HEADER, []) for p in h.split(",") if p.strip()]
    for p in offered:
        if p in supported:
            return p
    raise errors.ForbiddenError(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                f"server accepts {list(supported)}")


class _Feed:
    """aiohttp's payload parser slot, holding the upgraded connection's bytes for the session."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._paused = False
        self._ready = asyncio.Event()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)
            self._ready.set()
            if self._size >= READ_LIMIT and not self._paused and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._ready.set()

    async def read(self) -> bytes:
        while not self._chunks and not self._eof:
            self._ready.clear()
            await self._ready.wait()
        data, self._chunks, self._size = b"".join(self._chunks), [], 0
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        return data


async def upgrade(request: web.Request, protocol: str) -> tuple[spdy.Session, web.StreamResponse]:
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    feed = _Feed(transport)
    request.protocol.set_parser(feed)        # before the 101: kubectl's first frames follow it at once
    response = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": UPGRADE,
                                                       PROTOCOL_HEADER: protocol})
    response.force_close()
    await response.prepare(request)
    request.protocol.keep_alive(False)

    async def write(data: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        transport.write(data)
        if transport.get_write_buffer_size() > WRITE_LIMIT:
            await request.protocol._drain_helper()   # as aiohttp's own WebSocket writer waits

    return spdy.Session(feed.read, write), response


def tunnel_protocols(protocols: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(TUNNEL_PREFIX + p for p in protocols)


async def tunnel(request: web.Request, protocols: tuple[str, ...]) -> tuple[spdy.Session, web.WebSocketResponse]:
    ws = web.WebSocketResponse(protocols=tunnel_protocols(protocols), autoping=True, max_msg_size=0)
    await ws.prepare(request)

    async def read() -> bytes:
        while True:
            msg = await ws.receive()
            if msg.type == web.WSMsgType.BINARY:
                if msg.data:
                    return msg.data
            elif msg.type in (web.WSMsgType.CLOSE, web.WSMsgType.CLOSING, web.WSMsgType.CLOSED,
                              web.WSMsgType.ERROR):
                return b""

    async def write(data: bytes) -> None:
        await ws.send_bytes(data)

    return spdy.Session(read, write), ws


def wants_tunnel(request: web.Request, protocols: tuple[str, ...]) -> bool:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return False
    offered = {p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", []) for p in h.split(",")}
    return bool(offered & set(tunnel_protocols(protocols)))


# --- exec and attach ----------------------------------------------------------------------------

STDOUT, STDERR = 1, 2


def exec_streams(query: Any) -> dict[str, bool]:
    """Which streams the client will open, from PodExecOptions' query (absent means false)."""
    streams = {k: query.get(k, "").lower() in ("true", "1") for k in ("stdin", "stdout", "stderr", "tty")}
    if not (streams["stdin"] or streams["stdout"] or streams["stderr"]):
        raise errors.BadRequestError("you must specify at least 1 of stdin, stdout, stderr")
    return streams


class SpdyExec:
    """The client side of podproxy's exec relay, for kubectl speaking remotecommand over SPDY."""

    def __init__(self, session: spdy.Session, protocol: str, streams: dict[str, spdy.Stream],
                 serving: asyncio.Task[None], response: web.StreamResponse) -> None:
        self.session, self.protocol, self.streams, self._serving = session, protocol, streams, serving
        self.response = response      # what the handler returns: the 101 already sent

    @classmethod
    async def open(cls, request: web.Request, protocol: str, *, stdin: bool, stdout: bool, stderr: bool,
                   tty: bool) -> SpdyExec:
        session, response = await upgrade(request, protocol)
        serving = asyncio.ensure_future(session.serve())
        want = {"error"} | {name for name, on in (("stdin", stdin), ("stdout", stdout),
                                                  ("stderr", stderr and not tty),
                                                  ("resize", tty and protocol != "v2.channel.k8s.io")) if on}
        streams: dict[str, spdy.Stream] = {}
        try:
            async with asyncio.timeout(STREAM_CREATION_TIMEOUT):
                while set(streams) != want:
                    stream = await session.accept()
                    if stream is None:
                        break
                    kind = stream.header("streamType")
                    if kind not in want or kind in streams:
                        await stream.reset(spdy.PROTOCOL_ERROR)
                        continue
                    streams[kind] = stream
        except TimeoutError:
            pass
        if set(streams) != want:
            if "error" in streams:
                await cls._status_text(streams["error"], "timed out waiting for client to create streams")
            await session.close()
            serving.cancel()
            raise ConnectionResetError("the client did not open the exec streams")
        return cls(session, protocol, streams, serving, response)

    @staticmethod
    async def _status_text(stream: spdy.Stream, text: str) -> None:
        try:
            await stream.write(text.encode())
            await stream.close()
        except (spdy.StreamReset, ConnectionError):
            pass

    async def output(self, channel: int, data: bytes) -> None:
        stream = self.streams.get("stderr" if channel == STDERR else "stdout") or self.streams.get("stdout")
        if stream is not None and data:
            await stream.write(data)

    async def finish(self, status: dict[str, Any]) -> None:
        """The command ended: close its output, then say how it ended on the error stream."""
        try:
            for name in ("stdout", "stderr"):
                if name in self.streams:
                    await self.streams[name].close()
            error = self.streams["error"]
            if self.protocol == "v4.channel.k8s.io":
                await error.write(json.dumps(status).encode())
            elif status.get("status") != "Success":
                await error.write(status.get("message", "").encode())
            await error.close()
        except (spdy.StreamReset, ConnectionError):
            pass

    async def input(self) -> AsyncIterator[tuple[str, bytes]]:
        """stdin's bytes, its end ("close"), resizes (JSON), until the client goes away."""
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

        async def stdin(stream: spdy.Stream) -> None:
            while data := await stream.read():
                await queue.put(("stdin", data))
            if not stream.was_reset:
                await queue.put(("close", b""))

        async def resize(stream: spdy.Stream) -> None:
            buf, decoder = "", json.JSONDecoder()
            while data := await stream.read():
                buf += data.decode(errors="replace")
                while buf.strip():
                    try:
                        doc, end = decoder.raw_decode(buf.lstrip())
                    except ValueError:
                        break      # the rest of the object is still on its way
                    buf = buf.lstrip()[end:]
                    await queue.put(("resize", json.dumps(doc).encode()))

        async def ended() -> None:
            await asyncio.shield(self._serving)

        tasks = [asyncio.ensure_future(stdin(self.streams["stdin"]))] if "stdin" in self.streams else []
        if "resize" in self.streams:
            tasks.append(asyncio.ensure_future(resize(self.streams["resize"])))
        done = asyncio.ensure_future(ended())
        done.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            for t in (*tasks, done):
                t.cancel()
            await asyncio.gather(*tasks, done, return_exceptions=True)

    async def close(self) -> None:
        await self.session.close()
        self._serving.cancel()
        await asyncio.gather(self._serving, return_exceptions=True)
