"""What a Kubernetes API path names: group, version, namespace, resource, name, subresource.

Fed by every REST request; consumed by the handlers, which route on it. Mirrors
apiserver's RequestInfoFactory for the resource paths (discovery, OpenAPI and
health paths are routed before this).
"""
from __future__ import annotations

from dataclasses import dataclass

from eventplane.objects import errors


NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class RequestInfo:
    group: str
    version: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    watch_path: bool = False  # the deprecated /watch/ prefix


_parsed: dict[str, RequestInfo | None] = {}  # clients send the same paths again and again
_PARSED_MAX = 4096


def parse_path(path: str) -> RequestInfo | None:
    """None for paths that are not resource paths (the caller answers 404)."""
    try:
        return _parsed[path]
    except KeyError:
        pass
    info = _parse_path(path)  # raises for a path too long to name anything: not remembered
    if len(_parsed) >= _PARSED_MAX:
        _parsed.clear()
    _parsed[path] = info
    return info


def _parse_path(path: str) -> RequestInfo | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = False
    if rest and rest[0] == "watch":
        watch_path, rest = True, rest[1:]
    namespace = ""
    # As apiserver's RequestInfoFactory: /namespaces/NS/RESOURCE... addresses a namespaced resource,
    # but /namespaces/NAME and /namespaces/NAME/{status,finalize} address the namespace itself.
    if len(rest) >= 2 and rest[0] == "namespaces":
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    if len(rest) > 3:
        raise errors.NotFoundError(f"the server could not find the requested resource ({path})")
    return RequestInfo(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else "",
                       rest[2] if len(rest) > 2 else "", watch_path)
