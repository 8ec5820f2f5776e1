"""The document's shared parts: the request models' JSON Schema (from pydantic, from
each module that holds them), the answers' shapes (answers.py), one error response per
status with its codes, the headers and the security scheme.
"""

from __future__ import annotations

import importlib
from typing import Any

from infra.openapi.answers import TEXT, answers
from infra.openapi.error_codes import ERROR_CODES
from infra.openapi.operations import AUTH, LEDGER, obj

# The request models, by the module that holds them; their names are the document's.
MODELS = {
    LEDGER: (
        *("TopUp", "AddOn", "Bonus", "Usage", "Transfer", "Void", "Allocate", "Reclaim"),
        *("CreateWallet", "UpdateWallet", "ExtendLot", "CreateAsset", "CreateRule"),
    ),
    AUTH: ("CreatePrincipal", "UpdatePrincipal", "GrantRole", "RoleLimits", "Decide"),
}
STATUS_NAMES = {
    400: "the request is wrong; nothing was attempted",
    401: "no valid token",
    403: "the token's principal may not do this",
    404: "no such resource, or one outside the caller's boundary",
    405: "a method the path does not take",
    409: "another request holds the key or the wallet (retry), or the business id posted already (don't)",
    413: "the body is too large",
    415: "the body is not declared application/json",
    422: "a rule refused the action; nothing was posted",
    429: "over the rate limit; retry later",
    500: "a bug; a guard's refusal wrote nothing, an unexpected error's money action may or may not have posted",
    503: "a dependency is unavailable or busy; nothing was posted (outcome_unknown: maybe it was); retry with "
    "the same key",
}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "requests the caller's bucket holds (its burst)",
    "RateLimit-Remaining": "requests allowed right now, after this one",
    "RateLimit-Reset": "seconds until the bucket is full again",
}
SECONDS = {"type": "integer", "minimum": 0}
# headers each error status carries, besides Server-Timing and X-Request-Id
STATUS_HEADERS = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    429: ("Retry-After", *RATE_LIMIT_HEADERS),
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
                "description": "1-255 printable ASCII characters, scoped to the caller's tenant: another tenant's "
                "equal key is another key. The same request again answers what the first one did, with "
                "Idempotent-Replayed: true; another request under a used key is refused",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]*[!-~][ -~]*$"},
            }
        },
        "headers": headers(),
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An ID token from a trusted issuer, in `Authorization: Bearer <token>`: a Google "
                "service account's OIDC token (its audience the function's URL), an Identity Platform user's "
                "token, or locally the stack's own issuer's (`make token P=<principal>`). Every operation needs "
                "one: without it, or with one that does not verify, the answer is a 401 with `WWW-Authenticate`; "
                "a verified caller without the right gets a 403 (a wallet, lot or transaction outside its "
                "boundary, a 404). Behind Cloud Run's IAM check, a service sends the same token in "
                "`X-Serverless-Authorization` too: Cloud Run checks that header and lets `Authorization` reach "
                "the function with its signature intact ([docs/authentication-deployment.md]"
                "(authentication-deployment.md)).",
            }
        },
    }


def request_models() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for module, names in MODELS.items():
        commands = importlib.import_module(module)
        for name in names:
            schema = getattr(commands, name).model_json_schema(ref_template="#/components/schemas/{model}")
            for part, part_schema in {**schema.pop("$defs", {}), name: schema}.items():
                if schemas.setdefault(part, part_schema) != part_schema:
                    raise ValueError(f"{module}.{name}: two models named {part}; the document needs one")
    return schemas


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
    names = ("Server-Timing", "X-Request-Id", *STATUS_HEADERS.get(status, ()))
    found = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    if status == 409:  # only where a retry can succeed: a key or a wallet held by another request
        found["Retry-After"] = header(
            "seconds to wait before a retry (request_in_progress, wallet_locked)", SECONDS, False
        )
    if status == 429:  # a refusal of the limit always says where the caller stands
        found.update({name: header(meaning, SECONDS) for name, meaning in RATE_LIMIT_HEADERS.items()})
    return {
        "description": STATUS_NAMES[status],
        "headers": found,
        "content": {"application/json": {"schema": error_body(status)}},
    }


def success_headers() -> dict[str, Any]:
    """What every 2xx carries (besides Idempotent-Replayed on a replay)."""
    names = ("Server-Timing", "X-Request-Id", *RATE_LIMIT_HEADERS)
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


def headers() -> dict[str, Any]:
    return {
        "Server-Timing": header("where the time went: firestore, redis, postgres, total (ms)", TEXT),
        "Idempotent-Replayed": header(
            "true when this answers an earlier request under the key", {"const": "true"}, False
        ),
        "Retry-After": header("seconds to wait before a retry", SECONDS),
        "Allow": header("the methods the path takes", TEXT),
        "WWW-Authenticate": header('Bearer realm="wallet-ledger" (with error="invalid_token" when one was sent)', TEXT),
        "X-Request-Id": header(
            "this request's id, kept with what it wrote (a posting's actor, an audit row): the caller's own "
            "X-Request-Id when it is 1-128 of A-Z a-z 0-9 and ._:/-, else a new one",
            {"type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,128}$"},
        ),
        # on every answer of a limited request (a 429's own are required there); none
        # while limits are off or Redis is unreachable (docs/rate-limits.md: nothing true to say)
        **{
            name: header(f"{meaning}; left out while rate limits are off or Redis is unreachable", SECONDS, False)
            for name, meaning in RATE_LIMIT_HEADERS.items()
        },
    }
