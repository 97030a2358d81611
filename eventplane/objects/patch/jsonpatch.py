"""JSON Patch (RFC 6902) for `application/json-patch+json` requests.

The API layer hands the stored object and the decoded request body to
`apply_json_patch` and validates what comes back. Errors are reported the way
kube-apiserver (over evanphx/json-patch) reports them:

- a body that is not a list of operations: 400 BadRequest;
- more than 10,000 operations: 413 RequestEntityTooLarge;
- an operation that does not apply (a failed `test`, a missing path, an index
  out of range, an unknown op): 422 Invalid with the message
  "the server rejected our request due to an error in our request" and the
  library's own words in details.causes[0] (reason UnexpectedServerResponse),
  which is what kubectl prints as "The request is invalid: ...".

One departure from RFC 6902, kept because Kubernetes clients rely on it:
`replace` of an object member that does not exist adds it (evanphx/json-patch
v4 does so). Negative array indexes are refused.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequestError, Cause, InvalidError, RequestEntityTooLargeError
from .fieldpaths import json_equal

MAX_OPERATIONS = 10000  # kube-apiserver's maxJSONPatchOperations


def rejected(message: str) -> InvalidError:
    """A patch that does not apply, as kube-apiserver reports one (NewGenericServerResponse 422)."""
    return InvalidError("the server rejected our request due to an error in our request",
                        causes=(Cause("UnexpectedServerResponse", message),))


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """`doc` after the operations `ops`; `doc` is not modified."""
    if not isinstance(ops, list) or not all(isinstance(op, Mapping) for op in ops):
        raise BadRequestError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if len(ops) > MAX_OPERATIONS:
        raise RequestEntityTooLargeError(
            f"The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {len(ops)}")
    root = [copy.deepcopy(doc)]  # a holder, so that the whole document can be replaced
    for op in ops:
        _apply(root, op)
    return root[0]


def _apply(root: list, op: Mapping[str, Any]) -> None:
    kind = op.get("op")
    if kind == "add":
        path = _path(op, "path", kind)
        parent, key = _locate(root, path)
        if parent is None:
            raise rejected(f'add operation does not apply: doc is missing path: "{path}": missing value')
        _add(parent, key, copy.deepcopy(_value(op, kind)), path, "add")
    elif kind == "remove":
        path = _path(op, "path", kind)
        parent, key = _locate(root, path)
        if parent is None:
            raise rejected(f'remove operation does not apply: doc is missing path: "{path}": missing value')
        _remove(parent, key, path, "remove")
    elif kind == "replace":
        path = _path(op, "path", kind)
        parent, key = _locate(root, path)
        if parent is None:
            raise rejected(f"replace operation does not apply: doc is missing path: {path}: missing value")
        value = copy.deepcopy(_value(op, kind))
        if path == "":
            parent[0] = value
        elif isinstance(parent, list):
            parent[_index(parent, key, path, "replace", appending=False)] = value
        else:
            parent[key] = value  # a missing member is added, as evanphx/json-patch v4 does
    elif kind == "move":
        source = _path(op, "from", kind)
        path = _path(op, "path", kind)
        if path != source and path.startswith(source + "/"):
            raise rejected(f"move operation does not apply: cannot move {source} into its own child {path}")
        parent, key = _locate(root, source)
        if parent is None:
            raise rejected(f"move operation does not apply: doc is missing from path: {source}: missing value")
        value = _remove(parent, key, source, "move")
        parent, key = _locate(root, path)
        if parent is None:
            raise rejected(f"move operation does not apply: doc is missing destination path: {path}: "
                           "missing value")
        _add(parent, key, value, path, "move")
    elif kind == "copy":
        source = _path(op, "from", kind)
        path = _path(op, "path", kind)
        parent, key = _locate(root, source)
        if parent is None:
            raise rejected(f"copy operation does not apply: doc is missing from path: {source}: missing value")
        value = copy.deepcopy(_get(parent, key, source, "copy"))
        parent, key = _locate(root, path)
        if parent is None:
            raise rejected(f"copy operation does not apply: doc is missing destination path: {path}: "
                           "missing value")
        _add(parent, key, value, path, "copy")
    elif kind == "test":
        path = _path(op, "path", kind)
        parent, key = _locate(root, path)
        if parent is None:
            raise rejected(f"test operation does not apply: is missing path: {path}: missing value")
        expected = op.get("value")
        if path != "" and isinstance(parent, dict) and key not in parent:
            if expected is None:
                return  # a missing member tests equal to null, as in evanphx/json-patch
            raise rejected(f"testing value {path} failed: test failed")
        if not json_equal(_get(parent, key, path, "test"), expected):
            raise rejected(f"testing value {path} failed: test failed")
    else:
        raise rejected(f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}")


def _path(op: Mapping[str, Any], name: str, kind: str) -> str:
    value = op.get(name)
    if not isinstance(value, str):
        what = "path" if name == "path" else "from"
        raise rejected(f"{kind} operation failed to decode {what}: missing value")
    if value and not value.startswith("/"):
        raise rejected(f'{kind} operation does not apply: doc is missing path: "{value}": missing value')
    return value


def _value(op: Mapping[str, Any], kind: str) -> Any:
    if "value" not in op:
        raise rejected(f"{kind} operation, missing value field: missing value")
    return op["value"]


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _locate(root: list, pointer: str) -> tuple[Any, Any]:
    """The container holding the pointer's last token, and that token; (None, None) if a parent is
    missing. The empty pointer names the whole document (held in `root`)."""
    if pointer == "":
        return root, 0
    tokens = [_unescape(t) for t in pointer.split("/")[1:]]
    current: Any = root[0]
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                return None, None
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or int(token) >= len(current):
                return None, None
            current = current[int(token)]
        else:
            return None, None
    if not isinstance(current, (dict, list)):
        return None, None
    return current, tokens[-1]


def _index(container: list, token: str, path: str, kind: str, *, appending: bool) -> int:
    if appending and token == "-":
        return len(container)
    if token.isdigit() and (token == "0" or not token.startswith("0")):
        index = int(token)
        limit = len(container) if appending else len(container) - 1
        if index <= limit:
            return index
        raise rejected(f"error in {kind} for path: '{path}': Unable to access invalid index: {index}: "
                       "invalid index referenced")
    raise rejected(f"error in {kind} for path: '{path}': value was not a proper array index: '{token}'")


def _add(container: Any, key: Any, value: Any, path: str, kind: str) -> None:
    if path == "":
        container[0] = value  # the root holder: the whole document is replaced
    elif isinstance(container, dict):
        container[key] = value
    else:
        container.insert(_index(container, key, path, kind, appending=True), value)


def _get(container: Any, key: Any, path: str, kind: str) -> Any:
    if path == "":
        return container[0]
    if isinstance(container, dict):
        if key not in container:
            raise rejected(f"error in {kind} for path: '{path}': missing value")
        return container[key]
    return container[_index(container, key, path, kind, appending=False)]


def _remove(container: Any, key: Any, path: str, kind: str) -> Any:
    if path == "":
        raise rejected(f"error in {kind} for path: '{path}': the whole document cannot be removed")
    if isinstance(container, dict):
        if key not in container:
            raise rejected(f"error in {kind} for path: '{path}': Unable to remove nonexistent key: {key}: "
                           "missing value")
        return container.pop(key)
    return container.pop(_index(container, key, path, kind, appending=False))
