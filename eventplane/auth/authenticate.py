"""Authentication: from a request's credentials to a User, the first step of every API request.

The API server hands over what it got on the wire — the Authorization header
and the client certificate the TLS handshake verified — and receives the
User that authorization (RBAC), admission and the event log's `actor` use.

As kube-apiserver's union of authenticators, in its order:
1. a verified client certificate → User(CN, groups = O values);
2. `Authorization: Bearer <token>` → the token file;
3. no credentials → None: the caller treats the request as `identity.ANONYMOUS`.
Credentials that are presented but wrong — an unknown token, an expired
certificate — raise UnauthorizedError (401), never fall back to anonymous:
a client whose token was revoked must learn so, not be quietly demoted.
"""
from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from eventplane.objects.errors import UnauthorizedError

from .identity import User, authenticated_user
from .tokens import TokenFile

log = logging.getLogger("eventplane.auth")

# getpeercert()'s form of a distinguished name: a tuple of RDNs, each a tuple of (attribute, value).
_PeerName = tuple[tuple[tuple[str, str], ...], ...]


class Authenticator:
    """Maps one request's credentials to a User.

    `ca_cert_path` is the CA client certificates must be issued by. The TLS
    handshake already verified the chain; checking the issuer again here keeps
    a server context that trusts more than our CA from letting those other
    certificates name users.
    """

    def __init__(self, tokens: TokenFile, ca_cert_path: Path | None) -> None:
        self.tokens = tokens
        self._ca_subject: tuple[str, ...] | None = None
        if ca_cert_path is not None:
            ca = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
            self._ca_subject = tuple(sorted(str(a.value) for a in ca.subject))

    def authenticate(self, *, authorization_header: str | None,
                     peer_cert: Mapping[str, Any] | None) -> User | None:
        """The request's user; None without credentials; UnauthorizedError for wrong ones.

        `peer_cert` is `ssl.SSLObject.getpeercert()` of the connection: a
        non-empty dict only for a certificate the handshake verified.
        """
        if peer_cert:
            user = self._from_certificate(peer_cert)
            if user is not None:
                return user
        token = bearer_token(authorization_header)
        if token is not None:
            user = self.tokens.lookup(token)
            if user is None:
                raise UnauthorizedError("Unauthorized")
            return user
        return None

    def _from_certificate(self, cert: Mapping[str, Any]) -> User | None:
        if self._ca_subject is not None and _values(cert.get("issuer", ())) != self._ca_subject:
            log.warning("client certificate of %s is not issued by the cluster CA; ignored",
                        _common_name(cert.get("subject", ())))
            return None
        not_after = cert.get("notAfter")
        # The handshake checked validity when the connection opened; a keep-alive
        # connection can outlive the certificate, and kube-apiserver checks per request.
        if not_after and ssl.cert_time_to_seconds(not_after) < time.time():
            raise UnauthorizedError("Unauthorized")
        subject = cert.get("subject", ())
        name = _common_name(subject)
        if not name:
            return None  # as Kubernetes: a certificate without CN names nobody
        groups = [v for rdn in subject for k, v in rdn if k == "organizationName"]
        return authenticated_user(name, groups=groups)


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of `Bearer <token>` (scheme in any case), else None — as kube-apiserver reads the header."""
    if not authorization_header:
        return None
    parts = authorization_header.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


def _values(name: _PeerName) -> tuple[str, ...]:
    # Values only: ssl and cryptography spell attribute names differently, and
    # the chain itself was verified by the handshake; this only tells trusted CAs apart.
    return tuple(sorted(v for rdn in name for _, v in rdn))


def _common_name(name: _PeerName) -> str:
    return next((v for rdn in name for k, v in rdn if k == "commonName"), "")
