"""One API operation, as the client hands it to a transport: what to do, to which
resource, with which options — independent of REST or NATS.

Built by client.py from the caller's arguments (names already resolved to a
ResourceInfo, namespaces already defaulted); rest.py turns it into an HTTP
request, nats.py into a request on `ep.api.<verb>`. `Reply` is what comes back.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventplane.objects.schema import ResourceInfo

READS = frozenset({"get", "list", "discovery"})
PATCH_TYPES = {"json": "application/json-patch+json", "merge": "application/merge-patch+json",
               "strategic": "application/strategic-merge-patch+json", "apply": "application/apply-patch+yaml"}


@dataclass(frozen=True)
class Write:
    """Options of a write, and the envelope fields it carries into its event."""

    dry_run: bool = False
    field_manager: str | None = None
    force: bool = False
    field_validation: str | None = None  # Strict | Warn | Ignore; the server's default when None
    causation: int | None = None  # the position of the event that caused this write
    idempotency_key: str | None = None  # a retry with the same key returns the first result


@dataclass(frozen=True)
class Op:
    verb: str  # get list create update apply patch delete watch
    info: ResourceInfo
    namespace: str = ""  # "" for cluster-scoped resources and lists across namespaces
    name: str = ""
    subresource: str = ""  # status, binding, eviction, scale (REST only)
    body: Any = None
    patch_type: str = ""  # a media type (PATCH_TYPES' values)
    label_selector: str | None = None
    field_selector: str | None = None
    resource_version: str | None = None
    resource_version_match: str | None = None
    limit: int | None = None
    continue_token: str | None = None
    table: bool = False  # answer as a meta.k8s.io Table
    propagation_policy: str | None = None
    grace_period_seconds: int | None = None
    preconditions: dict[str, str] | None = None  # delete: {"uid": …, "resourceVersion": …}
    write: Write = field(default_factory=Write)
    as_of: str | None = None  # get and list: time travel (a resourceVersion, an RFC 3339 time, or -10m)
    # watch only
    send_initial_events: bool = False
    timeout_seconds: int | None = None

    @property
    def idempotent(self) -> bool:
        """Safe to send again after a failure whose outcome is unknown."""
        return self.verb in READS or self.write.idempotency_key is not None


@dataclass(frozen=True)
class Reply:
    value: Any
    warnings: tuple[str, ...] = ()


class Transport(Protocol):
    async def call(self, op: Op) -> Reply:
        """Perform `op`; raise an eventplane error built from the server's Status, or UnreachableError."""

    def watch(self, op: Op) -> AsyncIterator[dict[str, Any]]:
        """Raw WatchEvents ({type, object}) until the server ends the stream (ends quietly when the
        stream is lost midway; raises UnreachableError when it cannot start)."""

    async def query(self, what: str, params: dict[str, str], target: Op | None = None) -> Reply:
        """A document of history.eventplane.io/v1 (history, diff, why, positions, verify, replay),
        about `target`'s object (its resource, namespace and name) when given."""

    async def discover(self) -> list[dict[str, Any]]:
        """Aggregated discovery: APIGroupDiscovery items, the core group first."""

    async def close(self) -> None: ...
