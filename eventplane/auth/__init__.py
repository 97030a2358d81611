"""Authentication of API requests, and the credentials and files it rests on.

The API server builds an `Authenticator` from the token file and the PKI
that `eventplane up` prepares (`ensure_pki`, `ensure_admin_token`), and
`write_kubeconfig`/`merge_into` hand those credentials to kubectl.
Authorization (RBAC) and admission will live here too. Imports only
eventplane.objects.
"""
from __future__ import annotations

from eventplane.objects.errors import ForbiddenError, UnauthorizedError

from .authenticate import Authenticator, bearer_token
from .certs import DEFAULT_SERVER_HOSTS, Pki, PkiError, ensure_pki, issue_client_cert
from .identity import (
    ANONYMOUS,
    ANONYMOUS_USER_NAME,
    AUTHENTICATED_GROUP,
    MASTERS_GROUP,
    UNAUTHENTICATED_GROUP,
    User,
    authenticated_user,
)
from .kubeconfig import KubeconfigError, default_path, merge_into, remove_from, write_kubeconfig
from .tokens import TokenFile, TokenFileError, ensure_admin_token

__all__ = [
    "ANONYMOUS", "ANONYMOUS_USER_NAME", "AUTHENTICATED_GROUP", "Authenticator", "DEFAULT_SERVER_HOSTS",
    "ForbiddenError", "KubeconfigError", "MASTERS_GROUP", "Pki", "PkiError", "TokenFile", "TokenFileError",
    "UNAUTHENTICATED_GROUP", "UnauthorizedError", "User", "authenticated_user", "bearer_token",
    "default_path", "ensure_admin_token", "ensure_pki", "issue_client_cert", "merge_into", "remove_from",
    "write_kubeconfig",
]
