"""Errors that cross layers, each with a stable `code` and an HTTP status.

    PostbackdError                 base; `code`, `message`, `status`, optional `details`
    ├── InputError (400)           bad input: the seed's inbound error cases and friends
    │   ├── DuplicateEvent (400)   same event_id + transaction_id on a no-duplicates event
    │   └── NotFoundInput (400)    an id in the request names nothing (the seed says 400)
    ├── Forbidden (403)            inactive source, concurrent event lock
    ├── Unauthorized (401)         missing / unknown API key
    ├── NotFound (404)             admin object absent or owned by another organization
    ├── MethodNotAllowed (405)     a known inbound path asked with the wrong method
    ├── Conflict (409)             unique name taken, archived object changed
    ├── Invalid (422)              admin API input that fails validation
    ├── PayloadTooLarge (413)
    └── Unsupported (415)          content type we cannot parse

Exactly one place (api/errors.py) renders them; anything else reaching it is a bug (500).
"""

from __future__ import annotations

from typing import Any


class PostbackdError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, code: str | None = None, message: str = "", details: Any = None):
        self.code = code or type(self).code
        self.message = message or self.code.replace("_", " ")
        self.details = details
        super().__init__(f"{self.code}: {self.message}")

    def __reduce__(self):
        """Pickled whole (the writer process sends errors back to the server process)."""
        return (type(self), (self.code, self.message, self.details), self.__dict__)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"success": False, "code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class InputError(PostbackdError):
    status = 400
    code = "invalid_request"


class DuplicateEvent(InputError):
    code = "duplicate_event"


class NotFoundInput(InputError):
    code = "not_found"


class Forbidden(PostbackdError):
    status = 403
    code = "forbidden"


class Unauthorized(PostbackdError):
    status = 401
    code = "unauthorized"


class NotFound(PostbackdError):
    status = 404
    code = "not_found"


class MethodNotAllowed(PostbackdError):
    status = 405
    code = "method_not_allowed"


class Conflict(PostbackdError):
    status = 409
    code = "conflict"


class Invalid(PostbackdError):
    status = 422
    code = "validation_error"


class PayloadTooLarge(PostbackdError):
    status = 413
    code = "body_too_large"


class Unsupported(PostbackdError):
    status = 415
    code = "unsupported_media_type"
