"""A two-way byte stream between two NATS connections, whole and in order, with credit-based flow
control: what `kubectl port-forward` needs between the API server and a node agent.

Used by eventplane/api/portforward.py (the client's side) and nodeagent/portforwardserver.py (the
pod's side). Each end subscribes to its own subject and publishes to the other's; one `Pipe` per
end. Messages carry a header `Op`:

- `data` (bytes, at most CHUNK) and `eof` (this direction is done: a half-close), each numbered by
  `Seq` from 1. NATS keeps one publisher's messages to one subscriber in order, but may drop some
  (a slow consumer, a reconnect): a gap in `Seq` ends the pipe with an error instead of handing on
  a stream with a hole in it.
- `ack` with `Bytes`: credit given back. A sender has `window` bytes in flight at most; the
  receiver returns credit for what its consumer has taken (the bytes of the previous `recv()`,
  once the consumer comes back for more), so a slow consumer — kubectl, or the pod — slows the
  sender instead of growing a queue, and the subscription never holds more than a window.
- `end`, optionally with `Error`: this end is gone; the other's `recv()` gets None after what was
  already queued, its `send()` raises PipeClosed, and `closed` is set.
- `alive`, every `keepalive` seconds: an end that hears nothing from the other for three of those
  takes it as gone (an agent or API server that died says no `end`), so neither holds a pod
  connection or a kubectl stream for a peer that is not there.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

WINDOW = 1 << 20
CHUNK = 64 * 1024
KEEPALIVE = 10.0


class PipeClosed(Exception):
    """The other end ended the pipe (or data was lost on the way)."""


class Pipe:
    def __init__(self, nc: Any, sub: Any, peer: str, *, window: int = WINDOW, keepalive: float = KEEPALIVE) -> None:
        self.nc, self.peer, self.window = nc, peer, window
        self._sub = sub
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._credit = window
        self._credit_back = asyncio.Event()
        self._sent_seq = self._recv_seq = 0
        self._to_ack = 0
        self.error = ""                  # why the other end ended, if it said
        self.closed = asyncio.Event()    # the other end sent `end`, or data was lost
        self._ended = False              # we sent `end`
        self._last_heard = asyncio.get_running_loop().time()
        self._dispatch = asyncio.ensure_future(self._run())
        self._keepalive = asyncio.ensure_future(self._keep_alive(keepalive))

    async def _keep_alive(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            await asyncio.sleep(every)
            if loop.time() - self._last_heard > 3 * every:
                self._peer_ended(f"nothing heard from the other end for {3 * every:g} s")
                return
            with contextlib.suppress(Exception):
                await self.nc.publish(self.peer, b"", headers={"Op": "alive"})

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async for m in self._sub.messages:
            self._last_heard = loop.time()
            headers = m.headers or {}
            op = headers.get("Op")
            if op == "ack":
                self._credit += int(headers.get("Bytes") or 0)
                self._credit_back.set()
            elif op in ("data", "eof"):
                seq = int(headers.get("Seq") or 0)
                if seq != self._recv_seq + 1:
                    self._peer_ended(f"lost data on the way: message {seq} came after {self._recv_seq}")
                    return
                self._recv_seq = seq
                self._queue.put_nowait(m.data if op == "data" else None)
            elif op == "end":
                self._peer_ended(headers.get("Error", ""))
                return

    def _peer_ended(self, error: str) -> None:
        self.error = error
        self.closed.set()
        self._credit_back.set()
        self._queue.put_nowait(None)

    async def send(self, data: bytes) -> None:
        for i in range(0, len(data), CHUNK):
            piece = data[i:i + CHUNK]
            while self._credit < len(piece) and not self.closed.is_set():
                self._credit_back.clear()
                await self._credit_back.wait()
            if self.closed.is_set() or self._ended:
                raise PipeClosed(self.error or "the other end closed the stream")
            self._credit -= len(piece)
            self._sent_seq += 1
            await self.nc.publish(self.peer, piece, headers={"Op": "data", "Seq": str(self._sent_seq)})

    async def send_eof(self) -> None:
        if self.closed.is_set() or self._ended:
            return
        self._sent_seq += 1
        await self.nc.publish(self.peer, b"", headers={"Op": "eof", "Seq": str(self._sent_seq)})

    async def recv(self) -> bytes | None:
        """The next bytes from the other end; None at its eof or end."""
        if self._to_ack and (self._queue.empty() or self._to_ack >= self.window // 4):
            n, self._to_ack = self._to_ack, 0
            if not self._ended:
                await self.nc.publish(self.peer, b"", headers={"Op": "ack", "Bytes": str(n)})
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)     # every later recv() sees the end too
            return None
        self._to_ack += len(item)
        return item

    async def end(self, error: str = "") -> None:
        """Tell the other end we are gone (with why), and stop listening."""
        if not self._ended:
            self._ended = True
            if not self.closed.is_set():
                headers = {"Op": "end"}
                if error:
                    headers["Error"] = " ".join(error.split())    # a NATS header is one line
                with contextlib.suppress(Exception):
                    await self.nc.publish(self.peer, b"", headers=headers)
        for t in (self._dispatch, self._keepalive):
            t.cancel()
        await asyncio.gather(self._dispatch, self._keepalive, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
