"""SPDY/3.1 as kubectl speaks it (moby/spdystream, under apimachinery's httpstream/spdy): frames,
header blocks, and a server-side session of streams over any byte transport.

Fed by eventplane/api/spdyupgrade.py, which hands a `Session` the bytes of an upgraded HTTP
connection (`Upgrade: SPDY/3.1`) or of the binary messages of a WebSocket that tunnels SPDY
(`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31's port-forward); consumed by port-forward
(portforward.py) and by exec/attach for kubectl before 1.30 (podproxy.py), which take the streams
the client opens (`accept()`), read and write them, and half-close them with FIN.

- Frames (draft 3): control frames carry the C bit, version 3 and a type; DATA frames a 31-bit
  stream id. Header blocks are a count and length-prefixed names and values (several values of
  one name joined by NUL), zlib-compressed with SPDY/3's dictionary, one zlib stream per
  direction per connection, each block ended by a sync flush. Names go out lowercased: the Go
  framer refuses any other.
- The client opens streams (odd ids) with a `streamType` header; the server answers each with a
  SYN_REPLY, as apimachinery's server does, so the client's CreateStream returns.
- Flow control (3.1): what we receive is acknowledged with WINDOW_UPDATE (per stream and for the
  connection, stream 0) once half a window has been consumed — consumed meaning read by the
  stream's reader, whose queue is bounded, so a slow reader stops the socket being read (TCP is
  then the backpressure, as for spdystream, which does not look at windows). What we send waits
  on the peer's windows only once the peer has shown it keeps them (sent a WINDOW_UPDATE or an
  INITIAL_WINDOW_SIZE setting): spdystream never sends WINDOW_UPDATE, and holding to the initial
  64 KiB would stall every transfer to kubectl.
- PING from the client is echoed; GOAWAY or the transport's end ends the session, and every
  stream's reader sees its end.
"""
from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
SETTINGS_INITIAL_WINDOW_SIZE = 7
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED, FRAME_TOO_LARGE = 7, 8, 9, 11

DEFAULT_WINDOW = 64 * 1024
MAX_FRAME_DATA = 64 * 1024         # what we put in one DATA frame
MAX_FRAME_LENGTH = (1 << 24) - 1   # what the 24-bit length allows

Headers = dict[str, list[str]]


def _dictionary() -> bytes:
    """SPDY/3's header compression dictionary (draft 3, section 2.6.10.1): length-prefixed
    words, then one run of status codes, dates and common values."""
    words = ("options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
             "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
             "cache-control", "connection", "content-base", "content-encoding", "content-language",
             "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
             "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
             "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
             "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
             "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
             "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public",
             "set-cookie", "keep-alive", "origin")
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3: the session cannot go on."""


# --- frames -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_to: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    values: tuple[tuple[int, int, int], ...]     # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = Data | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate


def encode_header_block(headers: Headers) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n, v = name.lower().encode(), "\x00".join(values).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,), pos, headers = struct.unpack_from(">I", block), 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            if not name or name != name.lower():
                raise ProtocolError(f"header name {name!r} is empty or not lowercase")
            if name in headers:
                raise ProtocolError(f"header {name!r} appears twice")
            headers[name] = value.split("\x00")
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed header block: {exc}") from None
    if pos != len(block):
        raise ProtocolError("header block longer than its pairs")
    return headers


class Encoder:
    """Frames to bytes, for one direction of one connection (its header compression context)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._zlib.compress(block) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        if len(payload) > MAX_FRAME_LENGTH:
            raise ValueError(f"control frame of {len(payload)} bytes is too large")
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(sid, data, fin):
                if len(data) > MAX_FRAME_LENGTH:
                    raise ValueError(f"data frame of {len(data)} bytes is too large")
                return struct.pack(">II", sid & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | len(data)) + data
            case SynStream(sid, headers, assoc, prio, fin, uni):
                flags = (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if uni else 0)
                head = struct.pack(">IIBB", sid & 0x7FFFFFFF, assoc & 0x7FFFFFFF, (prio & 7) << 5, 0)
                return self._control(SYN_STREAM, flags, head + self._compress(headers))
            case SynReply(sid, headers, fin):
                return self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                                     struct.pack(">I", sid & 0x7FFFFFFF) + self._compress(headers))
            case HeadersFrame(sid, headers, fin):
                return self._control(HEADERS, FLAG_FIN if fin else 0,
                                     struct.pack(">I", sid & 0x7FFFFFFF) + self._compress(headers))
            case RstStream(sid, status):
                return self._control(RST_STREAM, 0, struct.pack(">II", sid & 0x7FFFFFFF, status))
            case Settings(values, clear):
                body = struct.pack(">I", len(values)) + b"".join(
                    struct.pack(">II", (flags << 24) | (ident & 0xFFFFFF), value) for flags, ident, value in values)
                return self._control(SETTINGS, 1 if clear else 0, body)
            case Ping(ident):
                return self._control(PING, 0, struct.pack(">I", ident))
            case GoAway(last, status):
                return self._control(GOAWAY, 0, struct.pack(">II", last & 0x7FFFFFFF, status))
            case WindowUpdate(sid, delta):
                return self._control(WINDOW_UPDATE, 0, struct.pack(">II", sid & 0x7FFFFFFF, delta & 0x7FFFFFFF))
        raise TypeError(f"not a SPDY frame: {frame!r}")


class Decoder:
    """Bytes to frames, for one direction of one connection: `feed` whatever arrived, get the
    frames it completed. Unknown control frame types are skipped, as the spec asks."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._zlib = zlib.decompressobj(zdict=DICTIONARY)

    def _headers(self, data: bytes) -> Headers:
        try:
            block = self._zlib.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not decompress: {exc}") from None
        return decode_header_block(block)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        buf, pos = self._buf, 0
        try:
            while len(buf) - pos >= 8:
                first, second = struct.unpack_from(">II", buf, pos)
                flags, length = second >> 24, second & 0xFFFFFF
                if len(buf) - pos < 8 + length:
                    break
                payload = bytes(buf[pos + 8:pos + 8 + length])
                pos += 8 + length
                frame = self._frame(first, flags, payload)
                if frame is not None:
                    frames.append(frame)
        finally:
            del buf[:pos]      # once per feed, not once per frame
        return frames

    def _frame(self, first: int, flags: int, payload: bytes) -> Frame | None:
        if not first & 0x80000000:
            return Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}, not {VERSION}")
        return self._control(kind, flags, payload)

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        try:
            if kind == SYN_STREAM:
                sid, assoc, prio = struct.unpack_from(">IIB", p)
                return SynStream(sid & 0x7FFFFFFF, self._headers(p[10:]), assoc & 0x7FFFFFFF, prio >> 5, fin,
                                 bool(flags & FLAG_UNIDIRECTIONAL))
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p)
                cls = SynReply if kind == SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self._headers(p[4:]), fin)
            if kind == RST_STREAM:
                sid, status = struct.unpack(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", p)
                if len(p) != 4 + 8 * count:
                    raise ProtocolError(f"SETTINGS of {len(p)} bytes for {count} entries")
                values = tuple(((fi >> 24), fi & 0xFFFFFF, value)
                               for fi, value in struct.iter_unpack(">II", p[4:]))
                return Settings(values, bool(flags & 1))
            if kind == PING:
                (ident,) = struct.unpack(">I", p)
                return Ping(ident)
            if kind == GOAWAY:
                last, status = struct.unpack(">II", p) if len(p) == 8 else (*struct.unpack(">I", p), 0)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise ProtocolError(f"control frame type {kind} of {len(p)} bytes is malformed") from None
        return None


# --- the session --------------------------------------------------------------------------------

Reader = Callable[[], Awaitable[bytes]]      # b"" at the end
Writer = Callable[[bytes], Awaitable[None]]  # returns once the transport took the bytes (drained)

STREAM_QUEUE = 16   # DATA frames a stream holds for its reader before the socket stops being read


class StreamReset(Exception):
    """The stream was reset (RST_STREAM) or the session ended before it finished."""


@dataclass(eq=False)
class Stream:
    """One stream the client opened. `read()` gives its data and b"" at its end (FIN, reset, or
    the session's end); `write()` sends, `close()` half-closes (FIN), `reset()` aborts."""
    session: Session
    id: int
    headers: Headers
    _queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(STREAM_QUEUE))
    remote_closed: bool = False
    local_closed: bool = False
    was_reset: bool = False
    _send_window: int = DEFAULT_WINDOW
    _window_open: asyncio.Event = field(default_factory=asyncio.Event)
    _unacked: int = 0

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    async def read(self) -> bytes:
        if self._queue.empty() and (self.remote_closed or self.was_reset):
            return b""
        data = await self._queue.get()
        if data:
            self._unacked += len(data)
            await self.session._consumed(self, len(data))
        return data

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.was_reset:
            raise StreamReset(f"stream {self.id} is closed for writing")
        view = memoryview(data)
        while view:
            n = await self.session._reserve(self, min(len(view), MAX_FRAME_DATA))
            await self.session._send(Data(self.id, bytes(view[:n])))
            view = view[n:]

    async def close(self) -> None:
        """FIN: nothing more from us on this stream."""
        if self.local_closed or self.was_reset:
            return
        self.local_closed = True
        await self.session._send(Data(self.id, b"", fin=True))
        self.session._forget_if_done(self)

    async def reset(self, status: int = CANCEL) -> None:
        if self.was_reset:
            return
        self._ended(reset=True)
        await self.session._send(RstStream(self.id, status))

    def _ended(self, *, reset: bool = False) -> None:
        if reset:
            self.was_reset = True
            self._window_open.set()
        else:
            self.remote_closed = True
        try:
            self._queue.put_nowait(b"")
        except asyncio.QueueFull:   # the reader has data queued; it sees the end after it
            pass


class Session:
    """The server side of one SPDY/3.1 connection. Run `serve()` (reads frames until the transport
    ends); take streams from `accept()`; `close()` says GOAWAY."""

    def __init__(self, read: Reader, write: Writer, *, window: int = DEFAULT_WINDOW) -> None:
        self._read, self._write = read, write
        self._encoder, self._decoder = Encoder(), Decoder()
        self._write_lock = asyncio.Lock()
        self.streams: dict[int, Stream] = {}
        self._incoming: asyncio.Queue[Stream | None] = asyncio.Queue()
        self.window = window                       # what we grant the peer, per stream and per connection
        self._conn_unacked = 0
        self._peer_keeps_windows = False           # see the module docstring
        self._peer_initial_window = DEFAULT_WINDOW
        self._conn_send_window = DEFAULT_WINDOW
        self._conn_window_open = asyncio.Event()
        self._last_stream_id = 0
        self.closed = False

    async def _send(self, frame: Frame) -> None:
        async with self._write_lock:
            if self.closed and not isinstance(frame, GoAway):
                raise StreamReset("the SPDY session has ended")
            await self._write(self._encoder.encode(frame))

    async def accept(self) -> Stream | None:
        """The next stream the client opened (already answered with SYN_REPLY), or None once the
        session ended."""
        if self.closed and self._incoming.empty():
            return None
        return await self._incoming.get()

    async def serve(self) -> None:
        """Read frames until the transport or the peer ends the session; then every stream ends."""
        try:
            while True:
                data = await self._read()
                if not data:
                    return
                for frame in self._decoder.feed(data):
                    if await self._handle(frame) is False:
                        return
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.closed = True
        for s in list(self.streams.values()):
            s._ended(reset=True)
        self._conn_window_open.set()
        self._incoming.put_nowait(None)

    async def close(self, status: int = 0) -> None:
        if not self.closed:
            try:
                await self._send(GoAway(self._last_stream_id, status))
            except Exception:  # the transport is gone already
                pass
        self._shutdown()

    async def _handle(self, frame: Frame) -> bool:
        match frame:
            case SynStream(sid, headers, _, _, fin, uni):
                if sid % 2 == 0 or sid <= self._last_stream_id or sid in self.streams:
                    await self._send(RstStream(sid, PROTOCOL_ERROR))
                    return True
                self._last_stream_id = sid
                stream = Stream(self, sid, headers, _send_window=self._peer_initial_window)
                self.streams[sid] = stream
                await self._send(SynReply(sid, {}))
                if uni:
                    stream.local_closed = True
                if fin:
                    stream._ended()
                self._incoming.put_nowait(stream)
            case Data(sid, data, fin):
                stream = self.streams.get(sid)
                if stream is None or stream.remote_closed or stream.was_reset:
                    if stream is None:
                        await self._send(RstStream(sid, INVALID_STREAM))
                    return True
                if data:
                    await stream._queue.put(data)    # bounded: a slow reader stops us reading the socket
                if fin:
                    stream.remote_closed = True
                    await stream._queue.put(b"")
                    self._forget_if_done(stream)
            case RstStream(sid, _):
                stream = self.streams.pop(sid, None)
                if stream is not None:
                    stream._ended(reset=True)
            case Ping(ident):
                if ident % 2 == 1:          # the client's (odd); ours would be even, and we send none
                    await self._send(Ping(ident))
            case GoAway():
                return False
            case WindowUpdate(sid, delta):
                self._peer_keeps_windows = True
                if sid == 0:
                    self._conn_send_window += delta
                    self._conn_window_open.set()
                elif (stream := self.streams.get(sid)) is not None:
                    stream._send_window += delta
                    stream._window_open.set()
            case Settings(values):
                for _, ident, value in values:
                    if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                        self._peer_keeps_windows = True
                        delta, self._peer_initial_window = value - self._peer_initial_window, value
                        for s in self.streams.values():
                            s._send_window += delta
                            s._window_open.set()
            case SynReply() | HeadersFrame():
                pass        # we open no streams, and extra headers carry nothing kubectl needs
        return True

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.remote_closed and stream.local_closed:
            self.streams.pop(stream.id, None)

    async def _consumed(self, stream: Stream, n: int) -> None:
        """The reader took n bytes: give the peer its window back once half of it is used."""
        self._conn_unacked += n
        updates = []
        if stream._unacked >= self.window // 2 and not stream.remote_closed:
            updates.append(WindowUpdate(stream.id, stream._unacked))
            stream._unacked = 0
        if self._conn_unacked >= self.window // 2:
            updates.append(WindowUpdate(0, self._conn_unacked))
            self._conn_unacked = 0
        for u in updates:
            try:
                await self._send(u)
            except Exception:   # the session ended; the reader learns it from the next read
                pass

    async def _reserve(self, stream: Stream, want: int) -> int:
        """How many bytes (≤ want, ≥ 1) we may send now on `stream`, waiting for the peer's windows
        if it keeps them."""
        if not self._peer_keeps_windows:
            return want
        while True:
            if stream.was_reset or self.closed:
                raise StreamReset(f"stream {stream.id} was reset")
            n = min(want, stream._send_window, self._conn_send_window)
            if n > 0:
                stream._send_window -= n
                self._conn_send_window -= n
                return n
            if stream._send_window <= 0:
                stream._window_open.clear()
                await stream._window_open.wait()
            else:
                self._conn_window_open.clear()
                await self._conn_window_open.wait()
