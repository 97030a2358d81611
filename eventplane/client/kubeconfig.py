"""Reading a kubeconfig as kubectl does: which files, which context, which credentials.

Feeds `Client.from_kubeconfig` and epctl with one resolved `ClusterAccess`:
the server URL, the CA to trust, and a bearer token or a client certificate.

As client-go's loading rules: an explicit path is the only file read;
otherwise every file of $KUBECONFIG (colon-separated) is merged, the first
file to define a name or the current context winning; without $KUBECONFIG,
~/.kube/config. Relative file paths in an entry are relative to the file that
holds the entry. Writing kubeconfigs is eventplane.auth.kubeconfig's job.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeconfigError(Exception):
    """No usable kubeconfig: missing, unparsable, or without the context asked for; the message says which."""


@dataclass(frozen=True)
class ClusterAccess:
    """Everything a transport needs to reach and authenticate to one API server."""

    server: str
    context: str = ""
    namespace: str = "default"
    ca_pem: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None

    def __repr__(self) -> str:  # never print credentials
        return f"ClusterAccess(server={self.server!r}, context={self.context!r}, namespace={self.namespace!r})"


def kubeconfig_paths(path: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> list[Path]:
    if path:
        return [Path(path)]
    listed = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    return listed or [Path(env.get("HOME") or Path.home()) / ".kube" / "config"]


def load(path: str | os.PathLike | None = None, context: str | None = None,
         env: Mapping[str, str] = os.environ) -> ClusterAccess:
    """The access the kubeconfig's current (or the named) context gives."""
    paths = kubeconfig_paths(path, env)
    merged: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = ""
    found = False
    for p in paths:
        doc = _read(p, required=bool(path))
        if doc is None:
            continue
        found = True
        for section, entries in merged.items():
            for entry in doc.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") and entry["name"] not in entries:
                    entries[entry["name"]] = (entry, p)
        current = current or doc.get("current-context") or ""
    if not found:
        raise KubeconfigError(f"no kubeconfig at {os.pathsep.join(map(str, paths))}: give --kubeconfig or set "
                              "KUBECONFIG (`eventplane up` writes one)")
    name = context or current
    if not name:
        raise KubeconfigError("the kubeconfig has no current context: give --context")
    if name not in merged["contexts"]:
        raise KubeconfigError(f'context "{name}" does not exist in the kubeconfig')
    ctx = merged["contexts"][name][0].get("context") or {}
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in merged["clusters"]:
        raise KubeconfigError(f'context "{name}" names cluster "{cluster_name}", which the kubeconfig lacks')
    cluster_entry, cluster_file = merged["clusters"][cluster_name]
    cluster = cluster_entry.get("cluster") or {}
    user_entry, user_file = merged["users"].get(user_name, ({}, cluster_file))
    user = user_entry.get("user") or {}
    if user.get("exec") or user.get("auth-provider"):
        raise KubeconfigError(f'user "{user_name}": exec and auth-provider credentials are not supported; '
                              "use a token or a client certificate")
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f'cluster "{cluster_name}" has no server')
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _file(user["tokenFile"], user_file).decode().strip()
    return ClusterAccess(
        server=server.rstrip("/"), context=name, namespace=ctx.get("namespace") or "default",
        ca_pem=_data(cluster, "certificate-authority", cluster_file),
        insecure=bool(cluster.get("insecure-skip-tls-verify")), tls_server_name=cluster.get("tls-server-name"),
        token=token or None, client_cert_pem=_data(user, "client-certificate", user_file),
        client_key_pem=_data(user, "client-key", user_file))


def _read(path: Path, *, required: bool) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise KubeconfigError(f"{path}: no such file") from None
        return None
    except OSError as exc:
        raise KubeconfigError(f"{path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path} is not YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (a mapping at the top)")
    return doc


def _data(entry: Mapping[str, Any], key: str, origin: Path) -> bytes | None:
    """`KEY-data` (base64, embedded) wins over `KEY` (a file path), as in client-go."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"])
        except ValueError:
            raise KubeconfigError(f"{origin}: {key}-data is not base64") from None
    if entry.get(key):
        return _file(entry[key], origin)
    return None


def _file(name: str, origin: Path) -> bytes:
    p = Path(os.path.expanduser(name))
    if not p.is_absolute():
        p = origin.parent / p
    try:
        return p.read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"{origin}: cannot read {p}: {exc.strerror}") from None
