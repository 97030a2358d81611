"""bench/portforward.py: the byte pipe under `kubectl port-forward` (eventplane/client/natspipe.py)
and the SPDY framing the API server speaks to kubectl (eventplane/api/spdy.py), each beside a
baseline measured in the same run.

Embedded NATS (and PostgreSQL, unused) in a temp dir; two NATS connections in this process's loop.

1. Baseline: `--megabytes` MB published in 64 KiB messages from one connection to a subscriber on
   the other, as fast as NATS takes them — no order check, no flow control (NATS drops what a slow
   subscriber cannot hold; the baseline is sized to stay under the pending limit).
2. The pipe: the same bytes through Pipe.send/recv — numbered, acknowledged, at most its window
   (1 MiB) in flight — and compared whole at the end.
3. SPDY: the same bytes as 64 KiB DATA frames through an Encoder and a Decoder (the session's cost
   per byte, without a socket), beside joining the same chunks (a memory copy).
4. Targets: the pipe carries >= 50 MB/s and >= 40 % of bare NATS; SPDY framing >= 500 MB/s. The
   server and both ends share the machine (2 cores here), so the figures are pessimistic.

    .venv/bin/python bench/portforward.py [--megabytes 48] [--json]
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as c  # noqa: E402
import nats  # noqa: E402

from eventplane.api import spdy  # noqa: E402
from eventplane.client.natspipe import CHUNK, Pipe  # noqa: E402

PERF = time.perf_counter
TARGET_PIPE_MBS = 50.0
TARGET_PIPE_RATIO = 0.4
TARGET_SPDY_MBS = 500.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def bare_nats(nc_a: Any, nc_b: Any, payload: bytes) -> float:
    subject, got, done = nc_b.new_inbox(), 0, asyncio.Event()

    async def on_msg(m: Any) -> None:
        nonlocal got
        got += len(m.data)
        if got >= len(payload):
            done.set()

    sub = await nc_b.subscribe(subject, cb=on_msg, pending_bytes_limit=4 * len(payload))
    await nc_b.flush()
    t0 = PERF()
    for i in range(0, len(payload), CHUNK):
        await nc_a.publish(subject, payload[i:i + CHUNK])
    await asyncio.wait_for(done.wait(), 120)
    elapsed = PERF() - t0
    await sub.unsubscribe()
    return len(payload) / elapsed / 1e6


async def pipe(nc_a: Any, nc_b: Any, payload: bytes) -> float:
    a_subject, b_subject = nc_a.new_inbox(), nc_b.new_inbox()
    sub_a, sub_b = await nc_a.subscribe(a_subject), await nc_b.subscribe(b_subject)
    await nc_a.flush()
    await nc_b.flush()
    a, b = Pipe(nc_a, sub_a, b_subject), Pipe(nc_b, sub_b, a_subject)

    async def sender() -> None:
        for i in range(0, len(payload), 256 * 1024):      # as the agent reads a socket
            await a.send(payload[i:i + 256 * 1024])
        await a.send_eof()

    t0 = PERF()
    task = asyncio.ensure_future(sender())
    received = []
    while (chunk := await b.recv()) is not None:
        received.append(chunk)
    await task
    elapsed = PERF() - t0
    assert b"".join(received) == payload, "the pipe damaged the stream"
    await a.end()
    await b.end()
    return len(payload) / elapsed / 1e6


def spdy_framing(payload: bytes) -> tuple[float, float]:
    chunks = [payload[i:i + spdy.MAX_FRAME_DATA] for i in range(0, len(payload), spdy.MAX_FRAME_DATA)]
    t0 = PERF()
    assert len(b"".join(bytes(ch) for ch in chunks)) == len(payload)
    copy = len(payload) / (PERF() - t0) / 1e6
    enc, dec = spdy.Encoder(), spdy.Decoder()
    t0 = PERF()
    n = 0
    for ch in chunks:
        for frame in dec.feed(enc.encode(spdy.Data(1, ch))):
            n += len(frame.data)     # type: ignore[union-attr]
    framed = len(payload) / (PERF() - t0) / 1e6
    assert n == len(payload)
    return copy, framed


async def run_all(servers: c.Servers, args: Any, loop_name: str) -> dict[str, Any]:
    payload = os.urandom(args.megabytes * 1024 * 1024)
    nc_a, nc_b = await nats.connect(servers.nats_url), await nats.connect(servers.nats_url)
    try:
        await bare_nats(nc_a, nc_b, payload[: 4 * 1024 * 1024])     # warm-up, unmeasured
        await pipe(nc_a, nc_b, payload[: 4 * 1024 * 1024])
        log(f"bare NATS: {args.megabytes} MB")
        bare = await bare_nats(nc_a, nc_b, payload)
        log(f"pipe: {args.megabytes} MB")
        piped = await pipe(nc_a, nc_b, payload)
    finally:
        await nc_a.close()
        await nc_b.close()
    log("SPDY framing")
    copy, framed = spdy_framing(payload)
    return {"loop": loop_name, "cores": os.cpu_count(), "python": sys.version.split()[0],
            "megabytes": args.megabytes, "bare_nats_mbs": bare, "pipe_mbs": piped,
            "copy_mbs": copy, "spdy_mbs": framed}


def render(out: dict[str, Any]) -> str:
    ratio = out["pipe_mbs"] / out["bare_nats_mbs"]
    lines = [f"port-forward's byte paths — {out['cores']} cores, Python {out['python']}, {out['loop']}, "
             f"{out['megabytes']} MB each",
             "",
             f"  {'':<40}{'MB/s':>10}",
             f"  {'bare NATS pub/sub (baseline)':<40}{out['bare_nats_mbs']:>10.0f}",
             f"  {'natspipe (ordered, acked, 1 MiB window)':<40}{out['pipe_mbs']:>10.0f}",
             f"  {'joining 64 KiB chunks (baseline)':<40}{out['copy_mbs']:>10.0f}",
             f"  {'SPDY DATA frames encoded + decoded':<40}{out['spdy_mbs']:>10.0f}",
             "",
             f"  pipe / bare NATS: {ratio:.2f}",
             "",
             "targets (a MISS never changes the exit status)"]
    for text, ok in ((f"pipe >= {TARGET_PIPE_MBS:g} MB/s: {out['pipe_mbs']:.0f}", out["pipe_mbs"] >= TARGET_PIPE_MBS),
                     (f"pipe >= {TARGET_PIPE_RATIO:.0%} of bare NATS: {ratio:.0%}", ratio >= TARGET_PIPE_RATIO),
                     (f"SPDY framing >= {TARGET_SPDY_MBS:g} MB/s: {out['spdy_mbs']:.0f}",
                      out["spdy_mbs"] >= TARGET_SPDY_MBS)):
        lines.append(f"  {text}  {'PASS' if ok else 'MISS'}")
    return "\n".join(lines)


def main() -> int:
    p = c.parser(__doc__)
    p.add_argument("--megabytes", type=int, default=48, help="bytes carried per scenario, in MiB")
    c.add_common_args(p, server_log_level=None)
    return c.run_main(p.parse_args(), run_all, render, children=False)


if __name__ == "__main__":
    sys.exit(main())
