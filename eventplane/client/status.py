"""From a Kubernetes Status back to eventplane's error classes, and the client's own errors.

Fed by both transports with the Status the server answered (its `reason` and
`code`); the caller gets the same class the server raised (NotFoundError,
ConflictError, GoneError …), with `.status` holding the Status itself.
"""
from __future__ import annotations

from typing import Any

from eventplane.objects import errors

_BY_REASON: dict[str, type[errors.EventplaneError]] = {
    cls.reason: cls for cls in (
        errors.BadRequestError, errors.NotFoundError, errors.AlreadyExistsError, errors.ConflictError,
        errors.GoneError, errors.RequestEntityTooLargeError, errors.InvalidError, errors.ServerTimeoutError,
        errors.UnauthorizedError, errors.ForbiddenError, errors.MethodNotSupportedError,
        errors.NotAcceptableError, errors.UnsupportedMediaTypeError, errors.TooManyRequestsError)
}
_BY_REASON["Gone"] = errors.GoneError  # Kubernetes says Gone as well as Expired for 410
_BY_REASON["MethodNotAllowed"] = errors.MethodNotSupportedError
# When the reason is missing or unknown: the first class declaring the code.
_BY_CODE: dict[int, type[errors.EventplaneError]] = {}
for _cls in _BY_REASON.values():
    _BY_CODE.setdefault(_cls.code, _cls)
_BY_CODE[409] = errors.ConflictError


class UnreachableError(errors.EventplaneError):
    """No API server answered: the connection failed, timed out, or nobody serves the NATS subject.
    Reads (and writes with an idempotency key) are retried before this reaches the caller."""

    code = 503
    reason = "ServiceUnavailable"


def error_from_status(status: Any, *, code: int | None = None) -> errors.EventplaneError:
    """The error a Status (or any error body) stands for; `code` is the HTTP/NATS status when known."""
    if not isinstance(status, dict) or status.get("kind") != "Status":
        text = status.decode(errors="replace") if isinstance(status, bytes) else str(status or "")
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": text.strip() or f"the server answered {code}", "code": code or 500}
    code = int(status.get("code") or code or 500)
    cls = _BY_REASON.get(status.get("reason") or "") or _BY_CODE.get(code) or errors.EventplaneError
    details = status.get("details") or {}
    causes = tuple(errors.Cause(c.get("reason", ""), c.get("message", ""), c.get("field", ""))
                   for c in details.get("causes") or [] if isinstance(c, dict))
    exc = cls(status.get("message") or status.get("reason") or f"the server answered {code}",
              name=details.get("name", ""), group=details.get("group", ""), kind=details.get("kind", ""),
              causes=causes)
    exc.status = status
    if cls.code != code or cls is errors.EventplaneError:
        # Keep what the server said, e.g. a 503 or a 500 with its own reason.
        exc.code = code
        exc.reason = status.get("reason") or cls.reason
    return exc


def is_failure(value: Any) -> bool:
    return isinstance(value, dict) and value.get("kind") == "Status" and value.get("status") == "Failure"
