"""Kubeconfig files: the one `eventplane up` writes, and merging it into the user's ~/.kube/config.

`eventplane up` writes DATA_DIR/kubeconfig with `write_kubeconfig` (the
server URL, our CA and the admin credentials, all embedded), then — as kind
does — merges its cluster, user and context into the user's kubeconfig with
`merge_into`, so that plain `kubectl` talks to eventplane. `remove_from`
undoes the merge.

Merging replaces only entries with our names and keeps everything else,
including keys we do not know. Writes take kubectl's own lock (`<file>.lock`)
and replace the file atomically with mode 0600: a kubectl running at the same
time neither interleaves with us nor reads half a file.
"""
from __future__ import annotations

import base64
import errno
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from .certs import atomic_write

DEFAULT_NAME = "eventplane"
# The lists of a kubeconfig whose entries are keyed by `name`.
_SECTIONS = ("clusters", "users", "contexts")
LOCK_TIMEOUT = 5.0


class KubeconfigError(ValueError):
    """A kubeconfig we must not overwrite (it does not parse) or cannot build; the message says which."""


def write_kubeconfig(path: Path, *, server_url: str, ca_pem: bytes, user_name: str,
                     token: str | None = None, client_cert_pem: bytes | None = None,
                     client_key_pem: bytes | None = None, context: str = DEFAULT_NAME,
                     cluster: str = DEFAULT_NAME) -> None:
    """Write a self-contained kubeconfig (mode 0600) whose current context reaches `server_url`.

    `user_name` names the kubeconfig's user entry (the identity is whatever
    the token or certificate says). Give a token, a client certificate and
    key, or both.
    """
    if token is None and client_cert_pem is None:
        raise KubeconfigError("a kubeconfig needs a token or a client certificate")
    if (client_cert_pem is None) != (client_key_pem is None):
        raise KubeconfigError("a client certificate needs its key, and a key its certificate")
    credentials: dict[str, str] = {}
    if client_cert_pem is not None and client_key_pem is not None:
        credentials["client-certificate-data"] = _b64(client_cert_pem)
        credentials["client-key-data"] = _b64(client_key_pem)
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user_name, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user_name}}],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _dump(config), mode=0o600)


def merge_into(user_kubeconfig: Path, source: Path, *, make_current: bool = True) -> None:
    """Merge `source`'s clusters, users and contexts into `user_kubeconfig`, replacing same-named entries.

    Creates the file (and its directory) when missing. With `make_current`,
    the current context becomes `source`'s. Merging twice changes nothing.
    """
    incoming = _load(Path(source), missing_ok=False)
    with _editing(Path(user_kubeconfig)) as config:
        for section in _SECTIONS:
            entries = _entries(config, section)
            for entry in _entries(incoming, section):
                _put(entries, entry)
            config[section] = entries
        current = incoming.get("current-context") or next(
            (c["name"] for c in _entries(incoming, "contexts")), None)
        if make_current and current:
            config["current-context"] = current


def remove_from(user_kubeconfig: Path, name: str = DEFAULT_NAME) -> bool:
    """Remove context `name` and the cluster and user it (or the name itself) refers to,
    unless another context still uses them. True when the file changed.
    """
    path = Path(user_kubeconfig)
    if not path.exists():
        return False
    with _editing(path) as config:
        before = repr(config)
        contexts = _entries(config, "contexts")
        ours = next((c for c in contexts if c.get("name") == name), None)
        config["contexts"] = contexts = [c for c in contexts if c is not ours]
        body = (ours or {}).get("context") or {}
        for section, key in (("clusters", "cluster"), ("users", "user")):
            still_used = {(c.get("context") or {}).get(key) for c in contexts}
            doomed = {body.get(key), name} - still_used
            config[section] = [e for e in _entries(config, section) if e.get("name") not in doomed]
        if config.get("current-context") == name:
            config["current-context"] = ""  # as kind and kubectl leave it
        return repr(config) != before


def default_path(env: Mapping[str, str] = os.environ) -> Path:
    """The kubeconfig kubectl would change: of $KUBECONFIG's files the first that exists, else its last;
    ~/.kube/config without $KUBECONFIG (kind's rule)."""
    paths = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not paths:
        return Path.home() / ".kube" / "config"
    return next((p for p in paths if p.exists()), paths[-1])


# --- reading and writing -------------------------------------------------------------------------

@contextmanager
def _editing(path: Path) -> Iterator[dict[str, Any]]:
    """Load `path` under kubectl's lock, let the caller change it, write it back atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _kubectl_lock(path):
        config = _load(path, missing_ok=True)
        config.setdefault("apiVersion", "v1")
        config.setdefault("kind", "Config")
        yield config
        # A symlinked ~/.kube/config stays a symlink: replace the file it points to.
        atomic_write(path.resolve(), _dump(config), mode=0o600)


@contextmanager
def _kubectl_lock(path: Path) -> Iterator[None]:
    # The same lock file kubectl (client-go's clientcmd) and kind create with O_EXCL.
    lock = Path(f"{path}.lock")
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            break
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            if time.monotonic() > deadline:
                raise KubeconfigError(f"{lock} exists: another program is changing {path}, "
                                      f"or one died doing so (then remove the lock file)") from e
            time.sleep(0.05)
    try:
        yield
    finally:
        os.unlink(lock)


def _load(path: Path, *, missing_ok: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError(f"{path} is not YAML; not touching it: {e}") from e
    if config is None:
        return {}  # an empty file
    if not isinstance(config, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (a mapping at the top); not touching it")
    return config


def _entries(config: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    entries = config.get(section) or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise KubeconfigError(f"the {section} of a kubeconfig must be a list of mappings")
    return list(entries)


def _put(entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Replace the entry of the same name where it stands (a small diff), else append."""
    for i, existing in enumerate(entries):
        if existing.get("name") == entry.get("name"):
            entries[i] = entry
            return
    entries.append(entry)


def _dump(config: Mapping[str, Any]) -> bytes:
    return yaml.safe_dump(dict(config), default_flow_style=False, sort_keys=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
