"""Where eventplane's servers are: settings resolved from flags, then the
environment, then a data directory's endpoints.json, then defaults.

`eventplane up` writes endpoints.json into its data directory; every other
command (status, migrate, verify, the relay, later epctl) reads it to find the
servers that `up` started. Nothing here starts or connects to anything, and it
imports nothing of ours, so that any layer may use it without reaching past
its contract.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_DATA_DIR = "EVENTPLANE_DATA_DIR"
ENV_DATABASE_URL = "EVENTPLANE_DATABASE_URL"
ENV_NATS_URL = "EVENTPLANE_NATS_URL"
ENV_STREAM = "EVENTPLANE_STREAM"
ENV_SUBJECT_PREFIX = "EVENTPLANE_SUBJECT_PREFIX"
ENV_RETENTION_AGE = "EVENTPLANE_RETENTION_AGE"
ENV_RETENTION_MSGS = "EVENTPLANE_RETENTION_MSGS"

DEFAULT_DATA_DIR = ".eventplane"
ENDPOINTS_FILE = "endpoints.json"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to give it."""


class EndpointsMissing(ConfigError):
    """The data directory has no endpoints.json: `eventplane up` never ran there."""


def first(*values: str | None) -> str | None:
    """The first value that is set and not empty."""
    return next((v for v in values if v), None)


def resolve_data_dir(flag: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """--data-dir, else $EVENTPLANE_DATA_DIR, else .eventplane in the current directory; always absolute."""
    return Path(first(os.fspath(flag) if flag else None, env.get(ENV_DATA_DIR)) or DEFAULT_DATA_DIR).resolve()


@dataclass(frozen=True)
class Endpoints:
    """The contents of DIR/endpoints.json: how to reach what `eventplane up` runs.

    `pids` names the processes (`eventplane`, and `postgres`/`nats` when
    embedded); `embedded` says which servers `up` started itself.
    """

    database_url: str
    nats_url: str
    api_url: str | None = None
    kubeconfig: str | None = None
    pids: Mapping[str, int] = field(default_factory=dict)
    embedded: Mapping[str, bool] = field(default_factory=dict)
    bus: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"database_url": self.database_url, "nats_url": self.nats_url, "api_url": self.api_url,
                "kubeconfig": self.kubeconfig, "pids": dict(self.pids), "embedded": dict(self.embedded),
                "bus": dict(self.bus)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoints:
        try:
            return cls(database_url=data["database_url"], nats_url=data["nats_url"],
                       api_url=data.get("api_url"), kubeconfig=data.get("kubeconfig"),
                       pids=dict(data.get("pids") or {}), embedded=dict(data.get("embedded") or {}),
                       bus=dict(data.get("bus") or {}))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"endpoints.json is malformed: {exc!r}") from None

    def write(self, data_dir: Path) -> Path:
        """Replace DIR/endpoints.json atomically, so a reader never sees half a file."""
        path = Path(data_dir) / ENDPOINTS_FILE
        tmp = path.with_name(f".{ENDPOINTS_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, data_dir: Path) -> Endpoints:
        path = Path(data_dir) / ENDPOINTS_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise EndpointsMissing(
                f"no {path}: `eventplane up --data-dir {data_dir}` has never run there "
                f"(give --data-dir, or set {ENV_DATA_DIR})") from None
        try:
            return cls.from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not JSON: {exc}") from None


def resolve_database_url(*, flag: str | None = None, data_dir: str | os.PathLike | None = None,
                         env: Mapping[str, str] = os.environ) -> str:
    """--database-url, else --data-dir's endpoints.json, else $EVENTPLANE_DATABASE_URL, else the
    endpoints.json of $EVENTPLANE_DATA_DIR or .eventplane. A flag always beats the environment."""
    return _resolve_url("database_url", "--database-url", ENV_DATABASE_URL, flag, data_dir, env)


def resolve_nats_url(*, flag: str | None = None, data_dir: str | os.PathLike | None = None,
                     env: Mapping[str, str] = os.environ) -> str:
    """As `resolve_database_url`, for NATS."""
    return _resolve_url("nats_url", "--nats-url", ENV_NATS_URL, flag, data_dir, env)


def _resolve_url(attr: str, flag_name: str, env_name: str, flag: str | None,
                 data_dir: str | os.PathLike | None, env: Mapping[str, str]) -> str:
    if flag:
        return flag
    if data_dir:
        return getattr(Endpoints.read(resolve_data_dir(data_dir, env)), attr)
    if env.get(env_name):
        return env[env_name]
    try:
        return getattr(Endpoints.read(resolve_data_dir(None, env)), attr)
    except EndpointsMissing as exc:
        raise ConfigError(f"no {attr.replace('_', ' ')}: give {flag_name} or --data-dir, or set {env_name} "
                          f"({exc})") from None


def parse_duration(text: str) -> float:
    """Seconds from '3600', '90s', '15m', '12h' or '7d'."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"not a duration: {text!r} (seconds, or a number with s, m, h or d)")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise ConfigError(f"must not be negative: {text!r}")
    return n


def bus_settings(*, stream: str | None = None, subject_prefix: str | None = None,
                 retention_age: str | None = None, retention_msgs: str | None = None,
                 env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The bus settings that were given, flag before environment, as keyword arguments of
    `eventplane.bus.BusConfig`; what is absent keeps BusConfig's default."""
    settings: dict[str, Any] = {}
    if value := first(stream, env.get(ENV_STREAM)):
        settings["stream"] = value
    if value := first(subject_prefix, env.get(ENV_SUBJECT_PREFIX)):
        settings["subject_prefix"] = value
    if value := first(retention_age, env.get(ENV_RETENTION_AGE)):
        settings["max_age_seconds"] = parse_duration(value)
    if value := first(retention_msgs, env.get(ENV_RETENTION_MSGS)):
        settings["max_msgs"] = parse_count(value)
    return settings
