"""Who is asking: the user an authenticator hands to authorization and the event log.

Produced by `authenticate.Authenticator` (from a bearer token or a client
certificate); consumed by RBAC, admission and the `actor` of every event.
The names of the well-known users and groups are Kubernetes' own, so that
RBAC bindings written for Kubernetes (e.g. to `system:masters`) mean the same.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MASTERS_GROUP = "system:masters"
"""Members may do anything; RBAC is not consulted (as in Kubernetes)."""
AUTHENTICATED_GROUP = "system:authenticated"
"""Every user that presented valid credentials."""
UNAUTHENTICATED_GROUP = "system:unauthenticated"
"""The group of the anonymous user."""
ANONYMOUS_USER_NAME = "system:anonymous"


@dataclass(frozen=True)
class User:
    """An authenticated (or anonymous) identity, as Kubernetes' user.Info.

    `extra` carries authenticator-specific attributes (scopes, a credential id);
    it takes no part in hashing so that a User can key a cache.
    """

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS_USER_NAME

    def in_group(self, group: str) -> bool:
        return group in self.groups

    def user_info(self) -> dict[str, Any]:
        """authentication.k8s.io/v1 UserInfo, as a SelfSubjectReview's status returns it."""
        info: dict[str, Any] = {"username": self.name}
        if self.uid:
            info["uid"] = self.uid
        if self.groups:
            info["groups"] = list(self.groups)
        if self.extra:
            info["extra"] = {k: list(v) for k, v in self.extra.items()}
        return info


ANONYMOUS = User(name=ANONYMOUS_USER_NAME, groups=(UNAUTHENTICATED_GROUP,))
"""The user of a request that carried no credentials at all."""


def authenticated_user(name: str, *, uid: str = "", groups: Iterable[str] = (),
                       extra: Mapping[str, Iterable[str]] | None = None) -> User:
    """A User for valid credentials: its groups in order, without repeats, plus system:authenticated.

    Kubernetes adds system:authenticated to every authenticated user after the
    authenticator ran; doing it here, in one place, keeps every authenticator
    from forgetting it.
    """
    ordered = list(dict.fromkeys(g for g in groups if g))
    if AUTHENTICATED_GROUP not in ordered:
        ordered.append(AUTHENTICATED_GROUP)
    return User(name=name, uid=uid, groups=tuple(ordered),
                extra={k: tuple(v) for k, v in (extra or {}).items()})
