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


class Unauthenticated(LedgerError):
    """No bearer token, or one that does not verify (signature, issuer, audience,
    expiry), or one whose principal the ledger does not know or has disabled."""

    status = 401
    code = "unauthenticated"

    def __init__(self, message: str, *, token_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.token_sent = token_sent


class Forbidden(LedgerError):
    """A verified caller without the scope (or the second person) the action needs."""

    status = 403
    code = "forbidden"


class RateLimited(LedgerError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, headers: dict[str, str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers = headers


class NotFound(LedgerError):
    status = 404
    code = "not_found"


class MethodNotAllowed(LedgerError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(LedgerError):
    """The body is over the size the functions read (common.http.MAX_BODY_BYTES); it
    was not parsed."""

    status = 413
    code = "body_too_large"


class UnsupportedMediaType(LedgerError):
    """A body that is not declared `application/json` (UTF-8); it was not read."""

    status = 415
    code = "unsupported_media_type"


class InProgress(LedgerError):
    """Another request holds the idempotency key or the wallet; retry later."""

    status = 409
    code = "request_in_progress"


class AlreadyPosted(LedgerError):
    """A business id (a payment's reference, a usage id) posted already, under another
    Idempotency-Key and for another request: `details.transaction_id` names that posting.
    Nothing was posted, and a retry won't change it."""

    status = 409
    code = "already_posted"


class Refused(LedgerError):
    """A business rule refused the action; nothing was posted."""

    status = 422
    code = "refused"


class DependencyUnavailable(LedgerError):
    """Postgres, Redis or Firestore could not be reached before the action was sent to
    the database; nothing was posted."""

    status = 503
    code = "dependency_unavailable"


class OutcomeUnknown(DependencyUnavailable):
    """The connection to the database failed after a posting was sent: it may or may not
    have committed. A retry under the same Idempotency-Key answers which (a replay, or the
    posting made then); a new key could post it twice."""

    code = "outcome_unknown"


class GuardViolation(LedgerError):
    """The database refused a write that would break a ledger invariant (db/schema/
    20_guards.sql). The functions never send one; reaching this is a bug, not the
    caller's fault, and nothing was written."""

    status = 500

    def body(self) -> dict[str, Any]:
        # the guard's own words name rows and amounts: for the log, not for the caller
        return {"error": {"code": self.code, "message": self.message, "details": None}}


# The one list of codes the database raises (db/schema/: ledger.refuse() and the
# guards), and the class each belongs to. tests/unit/test_refusals.py reads every code
# the SQL can raise and fails on a code missing here, or one here the SQL never raises.
DATABASE_REFUSALS: dict[str, type[LedgerError]] = {
    # posting (70_posting.sql) and the rules it calls
    "wallet_not_found": NotFound,
    "unknown_asset": Refused,
    "asset_mismatch": Refused,
    "wallet_frozen": Refused,
    "wallet_closed": Refused,
    "wallet_dormant": Refused,
    "insufficient_funds": Refused,
    "idempotency_key_reused": Refused,
    "external_ref_already_posted": AlreadyPosted,
    "usage_id_already_posted": AlreadyPosted,
    "invalid_posting": InvalidRequest,
    "system_account": Refused,
    "transfer_outside_tree": Refused,
    "not_voidable": Refused,
    "credit_expired": Refused,
    "expiry_in_past": Refused,
    # trees (40_trees.sql)
    "not_a_child": Refused,
    "parent_not_active": Refused,
    # spend limits (50_spend_limits.sql)
    "spend_limit_exceeded": Refused,
    # lots (60_lots.sql)
    "lot_not_found": NotFound,
    "lot_expired": Refused,
    "lot_spent": Refused,
    "expiry_not_later": Refused,
    # dual control (75_access.sql)
    "change_not_found": NotFound,
    "change_decided": Refused,
    "change_stale": Refused,
    "operators_exist": Refused,
    "second_operator_required": Forbidden,
    # principals, grants and roles (75_access.sql)
    "principal_exists": Refused,
    "principal_not_found": NotFound,
    "unknown_role": Refused,
    "principal_without_owner": Refused,
    "root_wallet_not_found": Refused,
    "grant_exists": Refused,
    "grant_not_found": NotFound,
    "grant_revoked": Refused,
    "grant_pending": Refused,
    "role_not_found": NotFound,
    # automation rules (77_automation_rules.sql)
    "rule_not_found": NotFound,
    "rule_deleted": Refused,
    "not_a_pool": Refused,
    "member_not_in_pool": Refused,
    # guards (20_guards.sql)
    "append_only": GuardViolation,
    "unbalanced_transaction": GuardViolation,
    "sealed_transaction": GuardViolation,
    "wallet_identity_fixed": GuardViolation,
    "entry_commit_order": GuardViolation,
    "entry_transaction_unknown": GuardViolation,
    "entry_wallet_unknown": GuardViolation,
    "kept_for_good": GuardViolation,
    # balance checkpoints (32_balance_checkpoints.sql)
    "horizon_backwards": GuardViolation,
    "checkpoint_backwards": GuardViolation,
    # the reconciliation checkpoint (33_reconciliation_checkpoint.sql): moved back by
    # hand, moved by another run since this one's snapshot (its next run goes on), or
    # asked to move outside one snapshot; none reaches a function: only
    # `python -m common.reconcile` writes it
    "reconciliation_backwards": GuardViolation,
    "reconciliation_moved": GuardViolation,
    "reconciliation_needs_one_snapshot": GuardViolation,
    "invalid_limit": InvalidRequest,
}
