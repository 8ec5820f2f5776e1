"""One error hierarchy for the whole ledger.

Each error has a stable machine-readable `code`; its class decides the HTTP status.
`common.http` maps them to responses in one table; nothing else formats errors.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidRequest(LedgerError):
    """The request itself is wrong; nothing was attempted."""

    status = 400
    code = "invalid_request"


class NotFound(LedgerError):
    status = 404
    code = "not_found"


class MethodNotAllowed(LedgerError):
    status = 405
    code = "method_not_allowed"


class InProgress(LedgerError):
    """Another request holds the idempotency key or the wallet; retry later."""

    status = 409
    code = "request_in_progress"


class Refused(LedgerError):
    """A business rule refused the action; nothing was posted."""

    status = 422
    code = "refused"


class DependencyUnavailable(LedgerError):
    """Postgres, Redis or Firestore could not be reached; nothing was posted."""

    status = 503
    code = "dependency_unavailable"


# Codes raised by ledger.commit_posting() in Postgres, and the class each belongs to.
DATABASE_REFUSALS: dict[str, type[LedgerError]] = {
    "wallet_not_found": NotFound,
    "asset_mismatch": Refused,
    "wallet_frozen": Refused,
    "wallet_closed": Refused,
    "insufficient_funds": Refused,
    "idempotency_key_reused": Refused,
    "not_a_child": Refused,
    "transfer_outside_tree": Refused,
    "spend_limit_exceeded": Refused,
    "parent_not_active": Refused,
    "expiry_in_past": Refused,
    "invalid_posting": InvalidRequest,
    "lot_not_found": NotFound,
    "lot_expired": Refused,
    "lot_spent": Refused,
    "expiry_not_later": Refused,
    "credit_expired": Refused,
    "not_voidable": Refused,
    "system_account": Refused,
}
