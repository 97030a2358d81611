"""SPDY/3.1 framing and the server session (eventplane/api/spdy.py): frames against bytes made by
hand from the draft-3 layout, round trips through one compression context per direction, and a
session driven by a client made of the same Encoder/Decoder over an in-memory transport."""
from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from eventplane.api import spdy


def test_dictionary_is_spdy3s():
    d = spdy.DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1" in d
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


@pytest.mark.parametrize("frame, raw", [
    (spdy.Ping(1), b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"),
    (spdy.WindowUpdate(1, 0x10000), b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x01\x00\x01\x00\x00"),
    (spdy.RstStream(5, spdy.CANCEL), b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x05"),
    (spdy.GoAway(7, 0), b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x07\x00\x00\x00\x00"),
    (spdy.Settings(((0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 65536),)),
     b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x07\x00\x01\x00\x00"),
    (spdy.Data(3, b"hi", fin=True), b"\x00\x00\x00\x03\x01\x00\x00\x02hi"),
    (spdy.Data(0x7FFFFFFF, b""), b"\x7f\xff\xff\xff\x00\x00\x00\x00"),
])
def test_frames_match_hand_made_bytes(frame, raw):
    assert spdy.Encoder().encode(frame) == raw
    assert spdy.Decoder().feed(raw) == [frame]


def test_header_block_layout():
    block = spdy.encode_header_block({"streamType": ["error"], "port": ["80", "81"]})
    assert block == (b"\x00\x00\x00\x02" + b"\x00\x00\x00\x0astreamtype" + b"\x00\x00\x00\x05error"
                     + b"\x00\x00\x00\x04port" + b"\x00\x00\x00\x0580\x0081")
    assert spdy.decode_header_block(block) == {"streamtype": ["error"], "port": ["80", "81"]}


def test_syn_stream_bytes_and_its_compressed_headers():
    raw = spdy.Encoder().encode(spdy.SynStream(1, {"streamtype": ["data"]}, priority=2, fin=True))
    first, second, sid, assoc, prio, slot = struct.unpack_from(">IIIIBB", raw)
    assert first == 0x80030001 and second >> 24 == spdy.FLAG_FIN and second & 0xFFFFFF == len(raw) - 8
    assert (sid, assoc, prio, slot) == (1, 0, 2 << 5, 0)
    compressed = raw[18:]
    # a zlib stream that names a preset dictionary (FDICT) whose Adler-32 is SPDY/3's
    assert compressed[1] & 0x20 and struct.unpack_from(">I", compressed, 2)[0] == zlib.adler32(spdy.DICTIONARY)
    block = zlib.decompressobj(zdict=spdy.DICTIONARY).decompress(compressed)
    assert block == b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x04data"


def test_round_trip_keeps_one_compression_context_per_direction():
    frames = [spdy.SynStream(1, {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]}),
              spdy.SynStream(3, {"streamtype": ["data"], "port": ["8080"], "requestid": ["0"]}, unidirectional=True),
              spdy.SynReply(1, {}), spdy.HeadersFrame(3, {"x": ["y"]}, fin=True),
              spdy.Data(3, b"x" * 70000), spdy.Data(1, b"", fin=True), spdy.Ping(2), spdy.WindowUpdate(0, 5),
              spdy.Settings(((1, 4, 100), (0, 7, 1 << 20)), clear=True), spdy.RstStream(3, spdy.PROTOCOL_ERROR),
              spdy.GoAway(3, 1)]
    enc, dec = spdy.Encoder(), spdy.Decoder()
    wire = b"".join(enc.encode(f) for f in frames)
    got = []
    for i in range(0, len(wire), 7):          # arriving in pieces that cut frames anywhere
        got += dec.feed(wire[i:i + 7])
    assert got == frames
    # the second header block depends on the first: a fresh decoder cannot read it alone
    second = enc.encode(spdy.SynStream(5, {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]}))
    with pytest.raises(spdy.ProtocolError):
        spdy.Decoder().feed(second)
    assert dec.feed(second)[0].headers["port"] == ["8080"]


def test_bad_input_is_a_protocol_error():
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.Decoder().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")
    upper = zlib.compressobj(zdict=spdy.DICTIONARY)
    block = b"\x00\x00\x00\x01\x00\x00\x00\x04Port\x00\x00\x00\x0280"
    payload = struct.pack(">I", 1) + upper.compress(block) + upper.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(spdy.ProtocolError, match="lowercase"):
        spdy.Decoder().feed(struct.pack(">II", 0x80030002, len(payload)) + payload)
    with pytest.raises(spdy.ProtocolError, match="malformed"):
        spdy.Decoder().feed(b"\x80\x03\x00\x06\x00\x00\x00\x02\x00\x01")
    # an unknown control type is skipped, the next frame still read
    assert spdy.Decoder().feed(b"\x80\x03\x00\x0a\x00\x00\x00\x01\x00" + b"\x00\x00\x00\x01\x00\x00\x00\x00") == \
        [spdy.Data(1, b"")]


class Client:
    """kubectl's side of a session, in memory."""

    def __init__(self) -> None:
        self.enc, self.dec = spdy.Encoder(), spdy.Decoder()
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.frames: asyncio.Queue[spdy.Frame] = asyncio.Queue()
        self.skipped: list[spdy.Frame] = []

    async def server_reads(self) -> bytes:
        return await self.to_server.get()

    async def server_writes(self, data: bytes) -> None:
        for f in self.dec.feed(data):
            self.frames.put_nowait(f)

    def send(self, *frames: spdy.Frame) -> None:
        for f in frames:
            self.to_server.put_nowait(self.enc.encode(f))

    async def next(self, kind: type = object) -> spdy.Frame:
        """The first frame of `kind` the server sent and no earlier call took."""
        for f in self.skipped:
            if isinstance(f, kind):
                self.skipped.remove(f)
                return f
        while True:
            f = await asyncio.wait_for(self.frames.get(), 2)
            if isinstance(f, kind):
                return f
            self.skipped.append(f)


async def test_session_streams_replies_data_and_ends():
    c = Client()
    s = spdy.Session(c.server_reads, c.server_writes, window=1000)
    serving = asyncio.create_task(s.serve())
    c.send(spdy.SynStream(1, {"streamtype": ["error"]}), spdy.SynStream(3, {"streamtype": ["data"]}))
    error, data = await s.accept(), await s.accept()
    assert (error.id, error.header("streamType"), data.header("streamtype")) == (1, "error", "data")
    assert await c.next() == spdy.SynReply(1, {}) and await c.next() == spdy.SynReply(3, {})

    c.send(spdy.Data(3, b"a" * 600), spdy.Ping(1), spdy.Ping(2))
    assert await data.read() == b"a" * 600
    # half of the 1000-byte window consumed: the stream's and the connection's windows come back
    assert {await c.next(spdy.WindowUpdate), await c.next(spdy.WindowUpdate)} == \
        {spdy.WindowUpdate(3, 600), spdy.WindowUpdate(0, 600)}
    c.send(spdy.Data(3, b"b" * 100, fin=True))
    assert await data.read() == b"b" * 100 and await data.read() == b"" and await data.read() == b""
    assert await c.next(spdy.Ping) == spdy.Ping(1)      # the client's echoed, an even one not

    await data.write(b"z" * (spdy.MAX_FRAME_DATA + 10))
    await data.close()
    assert await c.next(spdy.Data) == spdy.Data(3, b"z" * spdy.MAX_FRAME_DATA)
    assert await c.next(spdy.Data) == spdy.Data(3, b"z" * 10)
    assert await c.next(spdy.Data) == spdy.Data(3, b"", fin=True)
    assert 3 not in s.streams            # closed both ways

    c.send(spdy.RstStream(1, spdy.CANCEL))
    assert await error.read() == b""
    with pytest.raises(spdy.StreamReset):
        await error.write(b"late")

    c.send(spdy.SynStream(2, {}))        # even: a server's id, refused
    assert await c.next(spdy.RstStream) == spdy.RstStream(2, spdy.PROTOCOL_ERROR)
    c.send(spdy.GoAway(3))
    await asyncio.wait_for(serving, 2)
    assert await s.accept() is None


async def test_session_waits_on_windows_only_of_a_peer_that_keeps_them():
    c = Client()
    s = spdy.Session(c.server_reads, c.server_writes)
    serving = asyncio.create_task(s.serve())
    c.send(spdy.SynStream(1, {}))
    stream = await s.accept()
    await stream.write(b"x" * 200_000)     # spdystream sends no WINDOW_UPDATE: nothing holds us back
    assert [len((await c.next(spdy.Data)).data) for _ in range(4)] == [65536, 65536, 65536, 3392]

    c.send(spdy.Settings(((0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 10),)), spdy.SynStream(3, {}))
    windowed = await s.accept()
    writing = asyncio.create_task(windowed.write(b"y" * 25))
    assert await c.next(spdy.Data) == spdy.Data(3, b"y" * 10)
    await asyncio.sleep(0.05)
    assert not writing.done()              # the stream's window is spent
    c.send(spdy.WindowUpdate(3, 100))
    assert await c.next(spdy.Data) == spdy.Data(3, b"y" * 15)
    await asyncio.wait_for(writing, 2)
    c.to_server.put_nowait(b"")            # the transport ends: streams end with it
    await asyncio.wait_for(serving, 2)
    assert await windowed.read() == b""
