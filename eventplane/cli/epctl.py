"""`epctl`: the user's command, with kubectl's conventions, over REST or NATS.

Reads the kubeconfig as kubectl does (KUBECONFIG, --kubeconfig, --context),
builds one eventplane.client.Client (`--via rest`, the default, or `--via
nats`) and hands it to a command from COMMANDS. Each command module has
`HELP`, `register(parser)` and `async run(args, client) -> exit code`.
Errors read as kubectl's (`Error from server (NotFound): …`, `error: …`) and
exit with 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from eventplane import config
from eventplane.client import Client, KubeconfigError
from eventplane.client.kubeconfig import load
from eventplane.objects import errors

from . import epctl_apply, epctl_delete, epctl_get
from . import epctl_audit
from . import epctl_history
from . import epctl_export, epctl_import, epctl_replay, epctl_verify
from . import epctl_explain
from .epctl_manifests import ManifestError
from .epctl_output import UsageError, error_text
from .running import run

USER_AGENT = "epctl/0.1"
ENV_NATS_PREFIX = "EVENTPLANE_NATS_API_PREFIX"

# The commands, in the order `epctl --help` lists them. The next ones plug in the same way:
# history, diff, audit, why, verify, export, import, replay.
COMMANDS: dict[str, ModuleType] = {
    "apply": epctl_apply,
    "get": epctl_get,
    "delete": epctl_delete,
    "audit": epctl_audit,
    "history": epctl_history.History,
    "diff": epctl_history.Diff,
    "why": epctl_history.Why,
    "verify": epctl_verify,
    "export": epctl_export,
    "import": epctl_import,
    "replay": epctl_replay,
    "explain-schedule": epctl_explain,
}


def add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """kubectl's global flags. On subcommands their default is SUPPRESS, so that a flag given
    before the command (`epctl -n x get pods`) is not reset by the subcommand's default."""
    def d(value):
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("connection")
    g.add_argument("--kubeconfig", metavar="FILE", default=d(None),
                   help="kubeconfig to use (default: $KUBECONFIG or ~/.kube/config)")
    g.add_argument("--context", default=d(None), help="kubeconfig context to use")
    g.add_argument("-n", "--namespace", default=d(None), help="namespace (default: the context's, or default)")
    g.add_argument("--token", default=d(None), help="bearer token instead of the kubeconfig's credentials")
    g.add_argument("--via", choices=("rest", "nats"), default=d("rest"), help="transport (default: rest)")
    g.add_argument("--nats-url", metavar="URL", default=d(None),
                   help=f"NATS URL for --via nats (default: ${config.ENV_NATS_URL}, else the data directory's "
                        "endpoints.json)")
    g.add_argument("--nats-prefix", metavar="P", default=d(os.environ.get(ENV_NATS_PREFIX, "ep.api")),
                   help=f"subject prefix of the NATS API (default: ${ENV_NATS_PREFIX} or ep.api)")
    g.add_argument("--data-dir", metavar="DIR", default=d(None),
                   help="data directory whose endpoints.json names the NATS URL")
    g.add_argument("--request-timeout", type=float, metavar="SECONDS", default=d(30.0),
                   help="how long one request may take (default: 30)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epctl", description="Drive an eventplane cluster, as kubectl does.")
    add_common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        p = commands.add_parser(name, help=module.HELP, description=module.HELP)
        add_common(p, suppress=True)
        module.register(p)
        p.set_defaults(run=module.run)
    return parser


def make_client(args: argparse.Namespace) -> Client:
    access = load(args.kubeconfig, args.context)
    namespace = args.namespace or access.namespace
    token = args.token or access.token

    def warn(message: str) -> None:
        print(f"Warning: {message}", file=sys.stderr)

    common = {"timeout": args.request_timeout, "user_agent": USER_AGENT, "namespace": namespace,
              "on_warning": warn}
    if args.via == "nats":
        url = config.resolve_nats_url(flag=args.nats_url, data_dir=args.data_dir, env=os.environ)
        if not token:
            raise UsageError("--via nats needs a bearer token: the kubeconfig's user has none (give --token)")
        return Client.via_nats(url, token, prefix=args.nats_prefix, **common)
    if args.token:
        from dataclasses import replace

        access = replace(access, token=args.token, client_cert_pem=None, client_key_pem=None)
    return Client.from_access(access, **common)


async def execute(args: argparse.Namespace) -> int:
    try:
        client = make_client(args)
    except (KubeconfigError, config.ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        async with client:
            return await args.run(args, client)
    except (errors.EventplaneError, ManifestError, UsageError) as exc:
        print(error_text(exc), file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = run(execute(args))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
