"""One error root, one class per condition, each mapped once to its HTTP status.

Every layer raises these; the API layer turns them into Kubernetes Status
objects (`to_status`) so that clients can match on `reason` and `code`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Cause:
    """One field-level reason, as in Status.details.causes."""

    type: str
    message: str
    field: str = ""


class EventplaneError(Exception):
    """Root of every error eventplane raises on purpose."""

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, name: str = "", group: str = "", kind: str = "",
                 causes: tuple[Cause, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = tuple(causes)

    def to_status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [
                {k: v for k, v in (("reason", c.type), ("message", c.message), ("field", c.field)) if v}
                for c in self.causes
            ]
        status: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        if details:
            status["details"] = details
        return status


class BadRequestError(EventplaneError):
    code = 400
    reason = "BadRequest"


class NotFoundError(EventplaneError):
    code = 404
    reason = "NotFound"


class AlreadyExistsError(EventplaneError):
    code = 409
    reason = "AlreadyExists"


class ConflictError(EventplaneError):
    """The expected resourceVersion is not the current one (optimistic concurrency)."""

    code = 409
    reason = "Conflict"


class GoneError(EventplaneError):
    """A position older than what a stream or cache still holds."""

    code = 410
    reason = "Expired"


class RequestEntityTooLargeError(EventplaneError):
    code = 413
    reason = "RequestEntityTooLarge"


class InvalidError(EventplaneError):
    code = 422
    reason = "Invalid"


class ServerTimeoutError(EventplaneError):
    code = 504
    reason = "Timeout"


class ChainBrokenError(EventplaneError):
    """The hash chain of the event log does not verify at `position`."""

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(message)
        self.position = position


class UnauthorizedError(EventplaneError):
    """Credentials were presented and are not valid (a wrong or revoked token)."""

    code = 401
    reason = "Unauthorized"


class ForbiddenError(EventplaneError):
    """The user is known but may not do this (authorization said no)."""

    code = 403
    reason = "Forbidden"


class MethodNotSupportedError(EventplaneError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptableError(EventplaneError):
    code = 406
    reason = "NotAcceptable"


class UnsupportedMediaTypeError(EventplaneError):
    code = 415
    reason = "UnsupportedMediaType"


class TooManyRequestsError(EventplaneError):
    code = 429
    reason = "TooManyRequests"


class ApplyConflictError(EventplaneError):
    """Server-side apply would change fields another manager owns; `causes` names each field
    (reason FieldManagerConflict) and the manager that owns it."""

    code = 409
    reason = "Conflict"
