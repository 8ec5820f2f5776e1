"""What each HTTP operation is: its summary, its request's command model, its query, and
the shape of its answer. The routes themselves come from the code (infra/openapi/
__init__.py): a money function's one POST, and each route of a function with a ROUTES
table (wallets, access). An operation the code has and this module lacks stops the
generator.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

LEDGER, AUTH = "common.ledger.commands", "common.auth.commands"  # the modules of request models
MAX_ID = 2**63 - 1
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
MONEY_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503)
READ_ERRORS = (400, 401, 403, 404, 429, 500, 503)
WRITE_ERRORS = (400, 401, 403, 404, 413, 415, 422, 429, 500, 503)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def keyed(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An answer with one top-level key, e.g. {"wallet": {...}}."""
    return obj([key], **{key: schema})


def array(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


@dataclasses.dataclass(frozen=True)
class Operation:
    summary: str
    answer: dict[str, Any]  # the JSON Schema of the 2xx body
    status: int = 200
    body: str | None = None  # the request's command model, by its name (components.MODELS names its module)
    body_required: bool = True  # False: the body may be left out altogether
    query: tuple[dict[str, Any], ...] = ()
    idempotent: bool = False  # needs an Idempotency-Key; the same request again replays
    errors: tuple[int, ...] = READ_ERRORS


def query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


# The money functions (every HTTP function but wallets): the command each takes, what it does.
MONEY_ACTIONS = {
    "topup": ("TopUp", "Top up a wallet from funding, with the payment's reference"),
    "addon": ("AddOn", "Add credit bought on top of a plan"),
    "bonus": ("Bonus", "Credit a wallet from promotion"),
    "usage": ("Usage", "Charge a wallet for a usage, under its lock"),
    "transfer": ("Transfer", "Move value between two wallets of one asset"),
    "void": ("Void", "Reverse an earlier transaction, at most once"),
    "allocate": ("Allocate", "Move value from a tree member's parent to the member"),
    "reclaim": ("Reclaim", "Move value from a tree member back to its parent"),
}


def money_operation(function: str) -> Operation:
    model, summary = MONEY_ACTIONS[function]
    return Operation(
        summary, keyed("transaction", ref("Transaction")), 201, model, idempotent=True, errors=MONEY_ERRORS
    )


QUERY_PARAMETERS = {
    "owner_id": "the owner",
    "action": "only entries of this action",
    "from": "entries at or after this instant (with its zone)",
    "to": "entries before this instant (with its zone)",
    "limit": "at most this many a page",
    "cursor": "the previous page's next_cursor, unchanged, with the same filters (signed: one altered or of "
    "another query is a 400 invalid_cursor)",
    "after": "the previous page's `next`: the last id it holds",
    "status": "only changes of this status (`all`: every one)",
    "target": "only rows about this target, e.g. `principal:alice`, `wallet:16`",
    "idempotency_key": "the Idempotency-Key the transaction was posted under (the caller's tenant's)",
    "external_ref": "a top-up's or add-on's payment reference (with `action`)",
    "usage_id": "a usage's id",
}


def model_query(
    model: str, module: str = LEDGER, descriptions: dict[str, str] | None = None
) -> tuple[dict[str, Any], ...]:
    """The query parameters a query model reads: one a field (`descriptions` for a name
    that means something else here than in QUERY_PARAMETERS)."""
    described = {**QUERY_PARAMETERS, **(descriptions or {})}
    schema = getattr(importlib.import_module(module), model).model_json_schema()
    parameters = []
    for name, field in schema["properties"].items():
        value = {key: value for key, value in field.items() if key not in ("title", "anyOf", "default")}
        # optional: the value's own schema, without the null a query string can't send
        for branch in field.get("anyOf", []):
            if branch != {"type": "null"}:
                value.update(branch)
        if field.get("default") is not None:
            value["default"] = field["default"]
        parameters.append(query(name, value, described[name], required=name in schema.get("required", ())))
    return tuple(parameters)


def wallet_operations() -> dict[tuple[str, str], tuple[str, Operation]]:
    """(route template, method): (its handler's name, the operation), for the wallets
    function's ROUTES table (functions/wallets/main.py)."""
    wallet, lot, rule = keyed("wallet", ref("Wallet")), keyed("lot", ref("Lot")), keyed("rule", ref("Rule"))
    voided_by = obj(["voided_by"], voided_by=nullable(ID))
    every_lot = query("all", {"type": "boolean", "default": False}, "true: every lot, spent and expired ones too")
    after = query("after", {"type": "integer", "minimum": 0, "maximum": MAX_ID}, "the previous page's next_after")
    limit = query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "members a page")
    return {
        ("/", "GET"): (
            "list_wallets",
            Operation(
                "An owner's wallets, in id order (up to 500)",
                keyed("wallets", array(ref("Wallet"))),
                query=model_query("WalletsQuery"),
            ),
        ),
        ("/", "POST"): (
            "create_wallet",
            Operation("Create a wallet", wallet, 201, "CreateWallet", errors=WRITE_ERRORS),
        ),
        ("/<id:wallet_id>", "GET"): ("get_wallet", Operation("A wallet, with its balance and limits", wallet)),
        ("/<id:wallet_id>", "PATCH"): (
            "update_wallet",
            Operation(
                "Change a wallet's status, credit limit, spend mode or spend limits",
                wallet,
                body="UpdateWallet",
                errors=WRITE_ERRORS,
            ),
        ),
        ("/<id:wallet_id>/history", "GET"): (
            "history",
            Operation(
                "A wallet's entries, newest first, a page at a time", ref("History"), query=model_query("HistoryQuery")
            ),
        ),
        ("/<id:wallet_id>/lots", "GET"): (
            "lots",
            Operation("A wallet's credit by lot: open lots, earliest expiry first", ref("Lots"), query=(every_lot,)),
        ),
        ("/<id:wallet_id>/rollup", "GET"): (
            "rollup",
            Operation("A tree node's balance plus every descendant's, per child", ref("Rollup")),
        ),
        ("/<id:wallet_id>/members", "GET"): (
            "members",
            Operation("Every wallet below a tree node, in id order", ref("Members"), query=(after, limit)),
        ),
        ("/<id:wallet_id>/rules", "GET"): (
            "list_rules",
            Operation(
                "The caller's tenant's automation rules on a wallet that are not deleted, in id order",
                keyed("rules", array(ref("Rule"))),
            ),
        ),
        ("/<id:wallet_id>/rules", "POST"): (
            "create_rule",
            Operation("Create an automation rule on a wallet", rule, 201, "CreateRule", errors=WRITE_ERRORS),
        ),
        ("/rules/<id:rule_id>", "GET"): ("get_rule", Operation("One automation rule of the caller's tenant", rule)),
        ("/rules/<id:rule_id>", "DELETE"): (
            "delete_rule",
            Operation("Delete a rule (kept, with status deleted); again, a no-op", rule, errors=WRITE_ERRORS),
        ),
        ("/rules/<id:rule_id>/pause", "POST"): (
            "pause_rule",
            Operation("Pause a rule", rule, errors=WRITE_ERRORS),
        ),
        ("/rules/<id:rule_id>/resume", "POST"): (
            "resume_rule",
            Operation("Make a rule active, and a threshold rule armed, again", rule, errors=WRITE_ERRORS),
        ),
        ("/lots/<id:lot_id>", "GET"): ("get_lot", Operation("One lot", lot)),
        ("/lots/<id:lot_id>/extend", "POST"): (
            "extend_lot",
            Operation(
                "Move a lot's expiry later, once per Idempotency-Key",
                lot,
                body="ExtendLot",
                idempotent=True,
                errors=tuple(sorted((*WRITE_ERRORS, 409))),
            ),
        ),
        ("/transactions/<id:transaction_id>", "GET"): (
            "get_transaction",
            Operation(
                "A transaction with its entries, and the void that reversed it",
                keyed("transaction", {"allOf": [ref("Transaction"), voided_by]}),
            ),
        ),
        ("/transactions", "GET"): (
            "find_transaction",
            Operation(
                "The caller's tenant's transaction posted under an Idempotency-Key or holding a business id "
                "(exactly one of idempotency_key, external_ref with action, usage_id), as GET "
                "/transactions/{transaction_id} shows it; 404 for any other tenant's",
                keyed("transaction", {"allOf": [ref("Transaction"), voided_by]}),
                query=model_query(
                    "TransactionLookup", descriptions={"action": "the action the payment's reference was posted by"}
                ),
            ),
        ),
        ("/assets", "GET"): ("list_assets", Operation("Every asset", keyed("assets", array(ref("Asset"))))),
        ("/assets", "POST"): (
            "create_asset",
            Operation(
                "Create an asset with its five system accounts",
                keyed("asset", ref("Asset")),
                201,
                "CreateAsset",
                errors=WRITE_ERRORS,
            ),
        ),
    }


def access_operations() -> dict[tuple[str, str], tuple[str, Operation]]:
    """(route template, method): (its handler's name, the operation), for the access
    function's ROUTES table (functions/access/main.py): the operators' API."""
    principal = keyed("principal", {"allOf": [ref("Principal"), obj(["grants"], grants=array(ref("Grant")))]})
    change = keyed("change", ref("Change"))

    def decide(summary: str) -> Operation:
        return Operation(summary, change, body="Decide", body_required=False, errors=WRITE_ERRORS)

    return {
        ("/principals", "GET"): (
            "list_principals",
            Operation(
                "Principals in id order, a page at a time",
                ref("Principals"),
                query=model_query("PrincipalsQuery", AUTH),
            ),
        ),
        ("/principals", "POST"): (
            "create_principal",
            Operation(
                "Register a principal: a token's issuer and subject",
                principal,
                201,
                "CreatePrincipal",
                errors=WRITE_ERRORS,
            ),
        ),
        ("/principals/<name:principal_id>", "GET"): (
            "get_principal",
            Operation("A principal, with every grant it was given (pending and revoked ones too)", principal),
        ),
        ("/principals/<name:principal_id>", "PATCH"): (
            "update_principal",
            Operation(
                "Change a principal's status, description or rate-limit override",
                principal,
                body="UpdatePrincipal",
                errors=WRITE_ERRORS,
            ),
        ),
        ("/principals/<name:principal_id>/grants", "POST"): (
            "grant_role",
            Operation(
                "Grant a role within a boundary; pending, with pending_change_id, when it needs a second operator",
                keyed("grant", ref("Grant")),
                201,
                "GrantRole",
                errors=WRITE_ERRORS,
            ),
        ),
        ("/grants/<id:grant_id>/revoke", "POST"): (
            "revoke_grant",
            Operation(
                "Revoke a live grant",
                keyed("grant", ref("Grant")),
                body="Decide",
                body_required=False,
                errors=WRITE_ERRORS,
            ),
        ),
        ("/roles", "GET"): (
            "list_roles",
            Operation(
                "Every role, with its scopes, rate limits and whether its grants wait for a second operator",
                keyed(
                    "roles", array({"allOf": [ref("Role"), obj(["dual_control"], dual_control={"type": "boolean"})]})
                ),
            ),
        ),
        ("/roles/<name:role>", "PATCH"): (
            "set_role_limits",
            Operation("Set a role's rate limits", keyed("role", ref("Role")), body="RoleLimits", errors=WRITE_ERRORS),
        ),
        ("/changes", "GET"): (
            "list_changes",
            Operation(
                "Changes waiting for a second operator (or decided ones), in id order",
                ref("Changes"),
                query=model_query("ChangesQuery", AUTH),
            ),
        ),
        ("/changes/<id:change_id>/approve", "POST"): (
            "approve_change",
            decide("Approve another operator's change, which applies at once"),
        ),
        ("/changes/<id:change_id>/reject", "POST"): ("reject_change", decide("Reject another operator's change")),
        ("/audit", "GET"): (
            "audit",
            Operation(
                "The audit log, in id order, a page at a time", ref("AuditLog"), query=model_query("AuditQuery", AUTH)
            ),
        ),
    }


# The functions with a ROUTES table, each with what its routes are.
ROUTED: dict[str, Callable[[], dict[tuple[str, str], tuple[str, Operation]]]] = {
    "wallets": wallet_operations,
    "access": access_operations,
}
