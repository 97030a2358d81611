"""Static bearer tokens, in kube-apiserver's --token-auth-file format.

One line per token, CSV: `token,user,uid[,"group1,group2"]`, so a file
written for Kubernetes works here and the other way round. `eventplane up`
creates the file with one admin token (`ensure_admin_token`) and puts that
token into the kubeconfig it writes; `authenticate.Authenticator` looks
presented tokens up here.

Unlike kube-apiserver, the file is re-read when it changes (one stat per
lookup), so adding or revoking a token needs no restart. A file that stops
parsing keeps the last good tokens (an editor's half-written save must not
lock the admin out); a file that is removed revokes every token.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from .certs import create_exclusively
from .identity import MASTERS_GROUP, User, authenticated_user

log = logging.getLogger("eventplane.auth.tokens")

ADMIN_USER = "admin"
ADMIN_UID = "admin"


class TokenFileError(ValueError):
    """The token file does not parse; the message names the file and the record."""


@dataclass(frozen=True)
class _Entry:
    token: str
    user: User


# What identifies one version of the file without reading it.
_Signature = tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns


class TokenFile:
    """The tokens of one file, re-read whenever the file changes.

    Tokens are held by their SHA-256, so finding one takes a dict lookup on a
    digest the caller cannot steer, and the final equality check is
    constant-time: neither reveals how much of a guessed token was right.
    """

    def __init__(self, path: Path, entries: dict[bytes, _Entry], signature: _Signature | None) -> None:
        self.path = Path(path)
        self._stat_path = str(self.path)  # os.stat of a str skips the Path's conversion, once per request
        self._entries = entries
        self._signature = signature
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> TokenFile:
        """Read `path`; a missing or malformed file is an error here, at start-up, not at the first request."""
        path = Path(path)
        signature = _signature(path)
        if signature is None:
            raise TokenFileError(f"token file {path} does not exist")
        return cls(path, _parse(path, path.read_text(encoding="utf-8")), signature)

    def lookup(self, token: str) -> User | None:
        """The user `token` belongs to, or None."""
        if not token:
            return None
        self._reload_if_changed()
        entry = self._entries.get(_digest(token))
        if entry is None or not hmac.compare_digest(entry.token.encode(), token.encode()):
            return None
        return entry.user

    def __len__(self) -> int:
        self._reload_if_changed()
        return len(self._entries)

    def _reload_if_changed(self) -> None:
        signature = _signature(self._stat_path)
        if signature == self._signature:
            return
        with self._lock:  # one reload when several threads notice the change
            if signature == self._signature:
                return
            if signature is None:
                log.warning("token file %s was removed: no token is valid until it returns", self.path)
                self._entries, self._signature = {}, None
                return
            try:
                entries = _parse(self.path, self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, TokenFileError) as e:
                # Remember the signature so the bad version is reported once, not per request.
                log.error("token file %s changed but does not load (%s); keeping the %d tokens it had",
                          self.path, e, len(self._entries))
                self._signature = signature
                return
            self._entries, self._signature = entries, signature
            log.info("token file %s reloaded: %d tokens", self.path, len(entries))


def ensure_admin_token(path: Path) -> str:
    """The admin token of the token file at `path`, creating the file with a new one if it is absent.

    The new file holds one line, `TOKEN,admin,admin,system:masters`, with mode
    0600. When the file exists, the token of its first `admin` line is returned;
    a file without one is an error rather than a silently re-granted admin.
    """
    path = Path(path)
    token = secrets.token_urlsafe(32)
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow([token, ADMIN_USER, ADMIN_UID, MASTERS_GROUP])
    path.parent.mkdir(parents=True, exist_ok=True)
    if create_exclusively(path, line.getvalue().encode(), mode=0o600):
        log.info("created token file %s with a token for %s", path, ADMIN_USER)
        return token
    for entry in _parse(path, path.read_text(encoding="utf-8")).values():
        if entry.user.name == ADMIN_USER:
            return entry.token
    raise TokenFileError(f"token file {path} has no line for user {ADMIN_USER!r}; add one "
                         f"(token,{ADMIN_USER},{ADMIN_UID},{MASTERS_GROUP}) or remove the file to have one made")


def ensure_user_token(path: Path, user: str, groups: tuple[str, ...] = ()) -> str:
    """The token of `user` (with exactly these groups) in the token file at `path`, adding a line with a
    new one when there is none: what `eventplane up` gives each component (scheduler, controllers,
    node agents) beside its client certificate, since the NATS API authenticates by token alone.
    The file is replaced whole (write, then rename), so a reader never sees half a line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for entry in _parse(path, text).values():
        if entry.user.name == user and entry.user.groups == authenticated_user(user, groups=groups).groups:
            return entry.token
    token = secrets.token_urlsafe(32)
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow([token, user, user, ",".join(groups)] if groups
                                                   else [token, user, user])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line.getvalue(), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    log.info("token file %s: added a token for %s", path, user)
    return token


def _parse(path: Path, text: str) -> dict[bytes, _Entry]:
    """kube-apiserver's rules: at least 3 columns, empty tokens skipped, a repeated token's last line wins."""
    entries: dict[bytes, _Entry] = {}
    # kube-apiserver's reader trims the space before a field, so "t, alice, 1" names "alice".
    for number, record in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), start=1):
        if not record:
            continue  # a blank line
        if len(record) < 3:
            raise TokenFileError(f"token file {path}, record {number}: needs at least 3 columns "
                                 f"(token, user name, user uid), found {len(record)}")
        token, name, uid = record[0], record[1], record[2]
        if not token:
            log.warning("token file %s, record %d: empty token, skipped", path, number)
            continue
        groups = record[3].split(",") if len(record) > 3 else []
        digest = _digest(token)
        if digest in entries:
            log.warning("token file %s, record %d: duplicate token, the later line wins", path, number)
        entries[digest] = _Entry(token, authenticated_user(name, uid=uid, groups=groups))
    return entries


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _signature(path: Path | str) -> _Signature | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
