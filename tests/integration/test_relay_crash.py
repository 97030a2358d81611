"""The relay process killed with SIGKILL mid-stream and restarted: nothing lost, nothing duplicated."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from tests.support.builders import ALICE, configmap, create
from tests.support.relaying import collect, stream_positions, wait_for_last_seq

pytestmark = pytest.mark.slow


def start_relay_process(database_url: str, nats_url: str, config, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "eventplane.cli.server", "relay", "--database-url", database_url,
         "--nats-url", nats_url, "--stream", config.stream, "--subject-prefix", config.subject_prefix],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)


async def test_relay_killed_mid_stream_and_restarted(store, bus, database_url, servers, tmp_path):
    config, nc = bus
    total = 6000
    log = open(tmp_path / "relay.log", "ab")
    procs = [start_relay_process(database_url, servers.nats_url, config, log)]

    async def writer(w: int) -> None:
        for i in range(total // 8):
            await store.append(create(configmap(f"w{w}-{i}")), ALICE)

    await wait_for_last_seq(nc, config.stream, 0, timeout=30)  # the relay created the stream
    writers = asyncio.gather(*[writer(w) for w in range(8)])
    consumer = asyncio.create_task(collect(nc, config, after=0, count=total, timeout=180))
    try:
        for kill_at in (800, 2500, 4000):
            await wait_for_last_seq(nc, config.stream, kill_at, timeout=60)
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(10)
            assert procs[-1].returncode == -signal.SIGKILL
            procs.append(start_relay_process(database_url, servers.nats_url, config, log))
        await writers
        await wait_for_last_seq(nc, config.stream, total, timeout=60)
        received = await consumer
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        log.close()
    assert [e.position for e in received] == list(range(1, total + 1))
    assert await stream_positions(nc, config.stream) == list(range(1, total + 1))
    assert procs[-1].returncode == 0  # the last one was stopped cleanly


async def test_two_relay_processes_one_killed_the_other_takes_over(store, bus, database_url, servers, tmp_path):
    config, nc = bus
    log = open(tmp_path / "relay.log", "ab")
    a = start_relay_process(database_url, servers.nats_url, config, log)
    b = start_relay_process(database_url, servers.nats_url, config, log)
    try:
        for i in range(300):
            await store.append(create(configmap(f"x{i}")), ALICE)
        await wait_for_last_seq(nc, config.stream, 300, timeout=60)
        # whichever leads, killing one leaves the other to carry on
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        for i in range(300):
            await store.append(create(configmap(f"y{i}")), ALICE)
        await wait_for_last_seq(nc, config.stream, 600, timeout=60)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        log.close()
    assert await stream_positions(nc, config.stream) == list(range(1, 601))
