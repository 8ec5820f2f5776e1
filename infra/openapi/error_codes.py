"""Every error code an HTTP function answers, with its status and when it is given: the
text infra/openapi.py puts in the API document.

The statuses come from the classes in common/errors.py; tests/unit/test_openapi.py reads
the codes the code raises and fails on one missing here or one here that nothing raises.
"""

from __future__ import annotations

# code: (HTTP status, when)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "validation_failed": (400, "a field is missing, unknown, of the wrong type or out of range; `details` lists each"),
    "invalid_json": (400, "the body is not a JSON object, repeats a key in one object, or nests too deeply"),
    "idempotency_key_missing": (400, "a money action without an Idempotency-Key"),
    "idempotency_key_invalid": (
        400,
        "an Idempotency-Key that is not 1-255 printable ASCII characters, or starts with a prefix the ledger reserves",
    ),
    "amount_out_of_range": (400, "the action would take a balance or total past a signed 64-bit integer"),
    "invalid_id": (
        400,
        "a path id that is not a positive 64-bit integer, or a principal id or role name that is not a name "
        "(1-128 of A-Z a-z 0-9 and ._:@-)",
    ),
    "invalid_cursor": (400, "a cursor this API did not return"),
    "invalid_posting": (400, "the database refused a malformed posting (the functions never send one)"),
    "invalid_limit": (400, "the database refused a checkpoint step of fewer than one transaction (none is sent)"),
    "unauthenticated": (401, "no token, or one that does not verify (signature, issuer, audience, expiry)"),
    "forbidden": (
        403,
        "a verified caller without the scope the action needs, an unknown or disabled principal, or on the "
        "access API a caller without grants admin over every wallet",
    ),
    "second_operator_required": (403, "the requester, or the grantee, deciding a pending change"),
    "wallet_not_found": (404, "no such wallet, or one outside the caller's boundary"),
    "transaction_not_found": (404, "no such transaction, or one outside the caller's boundary"),
    "lot_not_found": (404, "no such lot, or one outside the caller's boundary"),
    "route_not_found": (404, "a path the function does not serve"),
    "principal_not_found": (404, "no such principal"),
    "grant_not_found": (404, "no such grant"),
    "role_not_found": (404, "no such role"),
    "change_not_found": (404, "no such pending change"),
    "rule_not_found": (404, "no such automation rule, one of another tenant, or one outside the caller's boundary"),
    "method_not_allowed": (405, "a method the path does not take; `details.allowed` names those it does"),
    "request_in_progress": (409, "another copy of this request holds its Idempotency-Key; retry"),
    "wallet_locked": (409, "the wallet's usage lock was not had in time; retry"),
    "external_ref_already_posted": (
        409,
        "a top-up's or add-on's payment reference posted already, by another request (under any key) of the "
        "tenant; `details.transaction_id` names that posting (GET /transactions?external_ref=&action=); no retry",
    ),
    "usage_id_already_posted": (
        409,
        "a usage id posted already, by another request (under any key) of the tenant; `details.transaction_id` "
        "names that posting (GET /transactions?usage_id=); no retry",
    ),
    "body_too_large": (413, "the body is over 64 KiB; refused before it is parsed"),
    "unsupported_media_type": (
        415,
        "a body sent without Content-Type application/json (UTF-8, the only charset JSON has); not read",
    ),
    "insufficient_funds": (422, "the debit would take the wallet past its credit limit"),
    "asset_mismatch": (422, "the asset is not the wallet's"),
    "unknown_asset": (422, "no such asset"),
    "wallet_frozen": (422, "a frozen wallet moves no money, either way"),
    "wallet_closed": (422, "a closed wallet moves no money, and stays closed"),
    "wallet_dormant": (422, "a dormant wallet moves no money until it is reactivated (docs/dormancy.md)"),
    "same_wallet": (422, "a transfer to itself"),
    "system_account": (422, "a system account as the acting wallet or counterparty, or changed"),
    "already_voided": (422, "a transaction is voided at most once"),
    "not_voidable": (422, "voids and expiries can't be voided"),
    "credit_already_spent": (422, "a void whose credit was spent"),
    "credit_expired": (422, "a void whose credit has expired into breakage"),
    "idempotency_key_reused": (422, "a different request under a used Idempotency-Key"),
    "wallet_not_empty": (422, "closing a wallet that holds money"),
    "credit_limit_below_balance": (422, "a credit limit the balance is already below"),
    "asset_exists": (422, "creating an asset twice"),
    "transfer_outside_tree": (422, "a transfer that leaves an enterprise's or a reseller's tree"),
    "not_a_child": (422, "allocate or reclaim on a wallet with no parent"),
    "not_a_root": (422, "a spend mode on a wallet that is not a tree's root"),
    "parent_not_found": (422, "a member's parent does not exist"),
    "parent_mismatch": (422, "a member's parent is of another asset or model"),
    "parent_not_active": (422, "a member's parent is not active"),
    "tree_too_deep": (422, "a tree is at most 8 levels deep"),
    "member_credit_limit": (422, "only a tree's root may have a credit limit"),
    "spend_limit_exceeded": (422, "a usage past a spend limit on its path"),
    "expiry_in_past": (422, "a lot's expiry not after now"),
    "expiry_not_later": (422, "an extension not later than the lot's expiry"),
    "lot_expired": (422, "an extension of an expired lot"),
    "lot_spent": (422, "an extension of a spent lot"),
    "principal_exists": (422, "a principal id, or issuer and subject, taken already (`details.existing`)"),
    "unknown_role": (422, "a grant of a role that does not exist"),
    "root_wallet_not_found": (422, "a tree grant whose top is not a customer wallet"),
    "principal_without_owner": (422, "an `own` grant for a principal without an owner_id"),
    "grant_exists": (422, "the same grant is live (active or pending) already (`details.grant_id`)"),
    "grant_revoked": (422, "revoking a revoked grant"),
    "grant_pending": (422, "revoking a pending grant: reject its change instead (`details.change_id`)"),
    "change_decided": (422, "deciding a change decided already"),
    "change_stale": (422, "approving a credit limit whose wallet's limit changed since it was asked for"),
    "operators_exist": (422, "bootstrapping a third operator: operators add operators through this API"),
    "rule_deleted": (422, "pausing or resuming a deleted automation rule (deleted is final)"),
    "not_a_pool": (422, "a recurring allocation from a wallet that is not in an enterprise's or a reseller's tree"),
    "member_not_in_pool": (422, "a recurring allocation's member that is not a child of its pool"),
    "rate_limited": (429, "the caller is over its rate limit for this class of action; retry after Retry-After"),
    "internal_error": (
        500,
        "an unexpected error, logged with its traceback; a money action may or may not have posted: retry with "
        "the same Idempotency-Key, or look it up by that key",
    ),
    # the database's guards (db/schema/20_guards.sql): a bug, logged; the answer has no details
    "append_only": (500, "a database guard refused to change or delete a written row; nothing written"),
    "unbalanced_transaction": (500, "a database guard refused legs that do not sum to zero; nothing written"),
    "sealed_transaction": (500, "a database guard refused a leg added to a committed transaction; nothing written"),
    "wallet_identity_fixed": (500, "a database guard refused a change of a wallet's owner, model or asset"),
    "entry_commit_order": (500, "a database guard refused an entry outside its transaction's commit order"),
    "entry_transaction_unknown": (500, "a database guard refused an entry naming no transaction; nothing written"),
    "entry_wallet_unknown": (500, "a database guard refused an entry naming no wallet of its asset; nothing written"),
    "kept_for_good": (500, "a database guard refused deleting a wallet or an asset, or changing an asset's code"),
    "horizon_backwards": (500, "a database guard refused to move the balance checkpoints' horizon back"),
    "checkpoint_backwards": (500, "a database guard refused to change a balance checkpoint but by advancing it"),
    "reconciliation_backwards": (500, "a database guard refused to move the reconciliation checkpoint back"),
    "reconciliation_moved": (500, "the reconciliation checkpoint moved under a run that checked from before it"),
    "reconciliation_needs_one_snapshot": (
        500,
        "a database guard refused to move the reconciliation checkpoint outside the checks' one snapshot",
    ),
    "dependency_unavailable": (
        503,
        "Postgres, Redis or Firestore unreachable (`details.service` names it) before anything was sent to be "
        "posted; nothing was posted; retry",
    ),
    "outcome_unknown": (
        503,
        "the database connection was lost after the posting was sent: it may or may not have posted; retry with "
        "the same Idempotency-Key (never a new one), or look it up by that key",
    ),
    "issuer_unavailable": (503, "the token issuer's keys could not be fetched; retry"),
    "database_busy": (503, "no pooled connection came free, or contention outlasted the retries; retry"),
}
