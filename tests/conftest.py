from __future__ import annotations

import itertools
import os

import pytest

from eventplane.store import EventStore
from tests.support.servers import Servers, drop_database, fresh_database, prepare_template, start_servers

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Servers:
    s = start_servers(tmp_path_factory.mktemp("servers"))
    yield s
    s.nats.stop()
    s.postgres.stop()


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
