from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from eventplane.store import EventStore
from tests.support.servers import Servers, drop_database, fresh_database, prepare_template, start_servers

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def servers() -> Servers:
    # Not under pytest's basetemp: pytest prunes old basetemps, and a concurrent
    # session pruning ours would pull the data directory from under PostgreSQL.
    data_dir = Path(tempfile.mkdtemp(prefix="eventplane-test-"))
    s = start_servers(data_dir)
    yield s
    s.nats.stop()
    s.postgres.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def template(servers):
    await prepare_template(servers)


@pytest.fixture
async def database_url(servers, template) -> str:
    url = await fresh_database(servers)
    yield url
    await drop_database(servers, url)


@pytest.fixture
async def store(database_url):
    async with EventStore.connect(database_url) as s:
        yield s


@pytest.fixture
def bus_names():
    """A JetStream stream and subject prefix of this test's own."""
    n = f"{os.getpid()}x{next(_ids)}"
    return {"stream": f"EVENTS_{n}", "prefix": f"t{n}.ev"}


@pytest.fixture
async def bus(servers, bus_names):
    """This test's own stream on the session's NATS, deleted afterwards."""
    import nats

    from eventplane.bus import BusConfig

    config = BusConfig(stream=bus_names["stream"], subject_prefix=bus_names["prefix"])
    nc = await nats.connect(servers.nats_url)
    yield config, nc
    try:
        await nc.jetstream().delete_stream(config.stream)
    except Exception:
        pass  # the test removed it, or never created it
    await nc.close()


@pytest.fixture
async def relay(database_url, servers, bus):
    """A relay running in this process for the test's database and stream."""
    from tests.support.relaying import running_relay

    config, _ = bus
    async with running_relay(database_url, servers.nats_url, config) as r:
        yield r


@pytest.fixture
async def api(database_url, servers, bus, tmp_path):
    """An API server (with its relay) for this test's database and stream, and a kubeconfig for it."""
    from tests.support.apiserver import running_api

    config, _ = bus
    async with running_api(database_url, servers.nats_url, config, tmp_path / "api") as a:
        yield a
