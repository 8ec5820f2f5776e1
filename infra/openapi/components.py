"""The document's shared parts: the request models' JSON Schema (from pydantic), the
shapes of the answers, one error response per status with its codes, the headers and
the security scheme.

Answers are described by the keys they always carry, with their types; an answer may
carry more keys than these, so a new field does not break a client that reads the
document.
"""

from __future__ import annotations

from typing import Any

from infra.openapi.error_codes import ERROR_CODES
from infra.openapi.operations import ID, array, nullable, obj, ref

MODELS = (
    "TopUp",
    "AddOn",
    "Bonus",
    "Usage",
    "Transfer",
    "Void",
    "Allocate",
    "Reclaim",
    "CreateWallet",
    "UpdateWallet",
    "ExtendLot",
    "CreateAsset",
)
INT, TEXT, FLAG = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
OPTIONAL_INT, OPTIONAL_TEXT = nullable(INT), nullable(TEXT)
STATUS_NAMES = {
    400: "the request is wrong; nothing was attempted",
    401: "no valid token",
    403: "the token's principal may not do this",
    404: "no such resource, or one outside the caller's boundary",
    405: "a method the path does not take",
    409: "another request holds the key or the wallet; retry",
    413: "the body is too large",
    422: "a rule refused the action; nothing was posted",
    429: "over the rate limit; retry later",
    500: "a bug; nothing was posted",
    503: "a dependency is unavailable or busy; nothing was posted; retry",
}
# headers each error status carries, besides Server-Timing
STATUS_HEADERS = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    409: ("Retry-After",),
    429: ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"),
    503: ("Retry-After",),
}


def components() -> dict[str, Any]:
    return {
        "schemas": {**request_models(), **answers(), "Error": error_body(None)},
        "responses": {str(status): error_response(status) for status in STATUS_NAMES},
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "1-255 printable ASCII characters, global to the ledger: prefix them. The same "
                "request again answers what the first one did, with Idempotent-Replayed: true",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]*[!-~][ -~]*$"},
            }
        },
        "headers": headers(),
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An ID token from a trusted issuer: a Google service account's OIDC token, an "
                "Identity Platform user's token, or locally the stack's own issuer's. Every operation needs one.",
            }
        },
    }


def request_models() -> dict[str, Any]:
    from common.ledger import commands

    schemas: dict[str, Any] = {}
    for name in MODELS:
        schema = getattr(commands, name).model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


def answers() -> dict[str, Any]:
    entry = obj(["wallet_id", "amount", "balance_after"], wallet_id=ID, amount=INT, balance_after=OPTIONAL_INT)
    transaction = obj(
        [
            *("id", "action", "asset", "amount", "wallet_id", "counterparty_wallet_id", "idempotency_key"),
            *("external_ref", "usage_id", "product", "description", "voids_transaction_id", "metadata"),
            *("effective_at", "created_at", "entries"),
        ],
        id=ID,
        action=TEXT,
        asset=TEXT,
        amount=INT,
        wallet_id=ID,
        counterparty_wallet_id=nullable(ID),
        idempotency_key=TEXT,
        external_ref=OPTIONAL_TEXT,
        usage_id=OPTIONAL_TEXT,
        product=OPTIONAL_TEXT,
        description=OPTIONAL_TEXT,
        voids_transaction_id=nullable(ID),
        metadata={"type": "object"},
        effective_at=TIME,
        created_at=TIME,
        entries=array(ref("Entry")),
    )
    spend_limit = obj(["limit", "spent", "period_start"], limit=INT, spent=INT, period_start=TIME)
    wallet = obj(
        [
            *("id", "owner_id", "asset", "scale", "kind", "system_role", "model", "status", "balance"),
            *("available", "credit_limit", "expiring", "expired", "entry_count", "metadata", "parent_id"),
            *("root_id", "depth", "spend_mode", "spend_limits", "created_at", "updated_at"),
        ],
        id=ID,
        owner_id=TEXT,
        asset=TEXT,
        scale=INT,
        kind={"enum": ["customer", "system"]},
        system_role=OPTIONAL_TEXT,
        model={"enum": ["personal", "enterprise", "reseller", "system"]},
        status={"enum": ["active", "frozen", "closed"]},
        balance=INT,
        available={**OPTIONAL_INT, "description": "balance - expired + credit_limit; null for a system account"},
        credit_limit=INT,
        expiring=INT,
        expired=INT,
        entry_count=INT,
        metadata={"type": "object"},
        parent_id=nullable(ID),
        root_id=nullable(ID),
        depth=INT,
        spend_mode=nullable({"enum": ["allocated", "shared_pool"]}),
        spend_limits={"type": "object", "additionalProperties": spend_limit},
        created_at=TIME,
        updated_at=TIME,
    )
    lot_keys = ("id", "wallet_id", "transaction_id", "source_lot_id", "amount", "remaining", "expires_at")
    lot = obj(
        [*lot_keys, "expired", "created_at"],
        id=ID,
        wallet_id=ID,
        transaction_id=ID,
        source_lot_id=nullable(ID),
        amount=INT,
        remaining=INT,
        expires_at=TIME,
        expired=FLAG,
        created_at=TIME,
    )
    item_keys = ("entry_id", "amount", "balance_after", "created_at", "transaction_id", "action")
    item_keys += ("transaction_amount", "transaction_wallet_id", "counterparty_wallet_id", "external_ref")
    item_keys += ("usage_id", "product", "description", "voids_transaction_id", "effective_at")
    history_item = obj(
        list(item_keys),
        entry_id=ID,
        amount=INT,
        balance_after=OPTIONAL_INT,
        created_at=TIME,
        transaction_id=ID,
        action=TEXT,
        transaction_amount=INT,
        transaction_wallet_id=ID,
        counterparty_wallet_id=nullable(ID),
        external_ref=OPTIONAL_TEXT,
        usage_id=OPTIONAL_TEXT,
        product=OPTIONAL_TEXT,
        description=OPTIONAL_TEXT,
        voids_transaction_id=nullable(ID),
        effective_at=TIME,
    )
    sums = {"balance": INT, "rollup_balance": INT, "rollup_expiring": INT, "members": INT}
    child = obj(["wallet_id", "owner_id", *sums], wallet_id=ID, owner_id=TEXT, **sums)
    return {
        "Entry": entry,
        "Transaction": transaction,
        "Wallet": wallet,
        "Lot": lot,
        "Asset": obj(["code", "scale", "description"], code=TEXT, scale=INT, description=TEXT),
        "History": obj(
            ["wallet_id", "items", "next_cursor"],
            wallet_id=ID,
            items=array(history_item),
            next_cursor={**OPTIONAL_TEXT, "description": "give it as cursor for the next page; null on the last"},
        ),
        "Lots": obj(
            ["wallet_id", "balance", "available", "expiring", "expired", "no_expiry", "lots"],
            wallet_id=ID,
            balance=INT,
            available=OPTIONAL_INT,
            expiring=INT,
            expired=INT,
            no_expiry=INT,
            lots=array(ref("Lot")),
        ),
        "Rollup": obj(
            ["wallet_id", "owner_id", "asset", *sums, "children"],
            wallet_id=ID,
            owner_id=TEXT,
            asset=TEXT,
            **sums,
            children=array(child),
        ),
        "Members": obj(
            ["wallet_id", "members", "next_after"],
            wallet_id=ID,
            members=array(ref("Wallet")),
            next_after={**nullable(ID), "description": "give it as after for the next page; null on the last"},
        ),
    }


def error_body(status: int | None) -> dict[str, Any]:
    """The one error shape; for a status, its code is one of that status's codes."""
    code: dict[str, Any] = {"type": "string"}
    if status is not None:
        code = {
            "oneOf": [
                {"const": name, "description": when}
                for name, (code_status, when) in ERROR_CODES.items()
                if code_status == status
            ]
        }
    error = obj(["code", "message", "details"], code=code, message=TEXT, details={})
    return obj(["error"], error=error)


def error_response(status: int) -> dict[str, Any]:
    names = ("Server-Timing", *STATUS_HEADERS.get(status, ()))
    return {
        "description": STATUS_NAMES[status],
        "headers": {name: {"$ref": f"#/components/headers/{name}"} for name in names},
        "content": {"application/json": {"schema": error_body(status)}},
    }


def headers() -> dict[str, Any]:
    def header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
        return {"description": description, "required": required, "schema": schema}

    seconds = {"type": "integer", "minimum": 0}
    return {
        "Server-Timing": header("where the time went: firestore, redis, postgres, total (ms)", TEXT),
        "Idempotent-Replayed": header(
            "true when this answers an earlier request under the key", {"const": "true"}, False
        ),
        "Retry-After": header("seconds to wait before a retry", seconds),
        "Allow": header("the methods the path takes", TEXT),
        "WWW-Authenticate": header('Bearer realm="wallet-ledger" (with error="invalid_token" when one was sent)', TEXT),
        "RateLimit-Limit": header("requests the caller's bucket holds", seconds),
        "RateLimit-Remaining": header("requests left in the bucket", seconds),
        "RateLimit-Reset": header("seconds until the bucket is full again", seconds),
    }
