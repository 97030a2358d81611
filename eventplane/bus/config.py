"""Where events flow on NATS: the stream's name, its subject prefix and retention."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_STREAM = "EVENTS"
DEFAULT_PREFIX = "ep.ev"
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class BusConfig:
    """`max_age_seconds` and `max_msgs` bound the watch window JetStream keeps
    (0 = unbounded); PostgreSQL keeps everything regardless."""

    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_PREFIX
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    max_msgs: int = 0
    replicas: int = 1
