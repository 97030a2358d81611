"""Options shared by the subcommands of `eventplane`, and their resolution.

Each subcommand module adds the options it takes with these helpers and turns
the parsed arguments into settings with them; the order of precedence
(flags, environment, endpoints.json, defaults) lives in `eventplane.config`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from eventplane import config
from eventplane.bus import BusConfig
from eventplane.client import Client


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"data directory (default: ${config.ENV_DATA_DIR} or ./{config.DEFAULT_DATA_DIR})")


def add_database_source(parser: argparse.ArgumentParser) -> None:
    """--database-url or --data-dir (whose endpoints.json names the database), not both."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--database-url", metavar="URL",
                        help=f"PostgreSQL URL (default: ${config.ENV_DATABASE_URL}, "
                             "else the one in the data directory's endpoints.json)")
    source.add_argument("--data-dir", metavar="DIR",
                        help="read the database URL from DIR/endpoints.json, written by `eventplane up`")


def add_nats_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats-url", metavar="URL", help=f"NATS URL (default: ${config.ENV_NATS_URL})")


def add_bus_options(parser: argparse.ArgumentParser) -> None:
    d = BusConfig()
    group = parser.add_argument_group("event stream")
    group.add_argument("--stream", metavar="NAME",
                       help=f"JetStream stream of events (default: ${config.ENV_STREAM} or {d.stream})")
    group.add_argument("--subject-prefix", metavar="P",
                       help=f"subject prefix of events (default: ${config.ENV_SUBJECT_PREFIX} or {d.subject_prefix})")
    group.add_argument("--retention-age", metavar="SECONDS",
                       help="how long the stream keeps an event, in seconds or with s/m/h/d; 0 = for ever "
                            f"(default: ${config.ENV_RETENTION_AGE} or {d.max_age_seconds:g}s)")
    group.add_argument("--retention-msgs", metavar="N",
                       help=f"how many events the stream keeps; 0 = no limit (default: ${config.ENV_RETENTION_MSGS} "
                            f"or {d.max_msgs})")


def add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")


def database_url(args: argparse.Namespace) -> str:
    return config.resolve_database_url(flag=args.database_url, data_dir=args.data_dir, env=os.environ)


def nats_url(args: argparse.Namespace) -> str:
    return config.resolve_nats_url(flag=args.nats_url, data_dir=getattr(args, "data_dir", None), env=os.environ)


def add_via(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--via", choices=("rest", "nats"), default="rest",
                        help="send requests over REST, or over the NATS API (needs --nats-url and a token in the "
                             "kubeconfig; watches stay on REST; cheaper for the API server) (default: rest)")
    parser.add_argument("--nats-api-prefix", metavar="P", default="ep.api",
                        help="subject prefix of the NATS API, with --via nats (default: ep.api)")


def component_client(args: argparse.Namespace, kubeconfig: str | None, *, context: str | None = None,
                     user_agent: str, nats_url: str | None = None) -> Client:
    """The client of a component command: REST, or with `--via nats` requests over the NATS API."""
    if getattr(args, "via", "rest") != "nats":
        return Client.from_kubeconfig(kubeconfig, context, user_agent=user_agent)
    nats_url = nats_url or optional_nats_url(args)
    if not nats_url:
        raise config.ConfigError("--via nats needs a NATS URL: give --nats-url")
    client = Client.from_kubeconfig(kubeconfig, context, user_agent=user_agent, nats_url=nats_url,
                                    nats_prefix=args.nats_api_prefix)
    if type(client.transport).__name__ != "HybridTransport":
        raise config.ConfigError("--via nats needs a bearer token in the kubeconfig (the NATS API authenticates "
                                 "by token alone)")
    return client


def optional_nats_url(args: argparse.Namespace) -> str | None:
    """The NATS URL when one is configured, else None (a component then speaks REST alone)."""
    try:
        return nats_url(args)
    except config.ConfigError:
        return None


def bus_config(args: argparse.Namespace) -> BusConfig:
    return BusConfig(**config.bus_settings(stream=args.stream, subject_prefix=args.subject_prefix,
                                           retention_age=args.retention_age, retention_msgs=args.retention_msgs,
                                           env=os.environ))


def add_api_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("API server")
    group.add_argument("--api-port", type=int, default=int(os.environ.get("EVENTPLANE_API_PORT", "6443")),
                       help="HTTPS port of the Kubernetes API (default: $EVENTPLANE_API_PORT or 6443)")
    group.add_argument("--bind", default=os.environ.get("EVENTPLANE_BIND", "127.0.0.1"),
                       help="address the API listens on (default: 127.0.0.1)")
    group.add_argument("--api-host", action="append", default=[], metavar="NAME",
                       help="another name or address clients use to reach the API (serving certificate SAN)")
    group.add_argument("--audit-policy-file", metavar="FILE", type=Path, default=None,
                       help="audit.k8s.io/v1 Policy (YAML) deciding what is audited (default: every request at "
                            "Metadata, health checks not at all)")


def api_config(args: argparse.Namespace, database_url: str, nats_url: str, bus: BusConfig, data_dir):
    from eventplane.api.server import ApiConfig

    return ApiConfig(database_url=database_url, nats_url=nats_url, data_dir=data_dir, bus=bus, bind=args.bind,
                     port=args.api_port, hosts=tuple(args.api_host),
                     audit_policy=getattr(args, "audit_policy_file", None))
