"""The API contract, fuzzed: Schemathesis sends each operation of docs/openapi.json
requests made from the document, valid and invalid, to the running function that
serves it, the operators' API (functions/access) included. No answer may be a 5xx,
every answer must conform to the document (status, content type, headers, body),
invalid data must be refused, and the money invariants hold afterwards (the tier's
autouse check, after each operation).

Every request carries a valid bearer token (tests.support.headers_for), unless the
example is about its Authorization header being missing or wrong: that one must meet
a 401, and no other may.

Most valid requests name wallets, lots and transactions of a small pool made first,
and an amount a wallet can pay, so they reach the ledger's rules instead of a 404.
Each money request gets a fresh Idempotency-Key. The operators' API works on a pool of
its own: principals, grants and pending changes of fuzz-only principals, requested by
a second operator so that the fuzzing operator may decide them, and a fuzz-only role.
Its path values never name anything else, so the fuzzing can't disable, revoke,
approve or re-limit what the other tests call with.

LEDGER_FUZZ_EXAMPLES sets the examples per operation: few in `make test`, many in
`make fuzz`.
"""

from __future__ import annotations

import json
import os
import random
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import negated_parameters
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from common.routing import NameConverter
from infra.openapi import DOCUMENT
from infra.openapi.operations import MAX_ID
from tests.support import ensure_asset, headers_for, http, key, new_wallet, principal, sql

EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "10"))
ASSET = "FUZ"
OWNER = "fuzz-owner"
FUZZ_ROLE = "fuzz_role"  # a role of its own: the fuzzing sets its rate limits, never a real role's
REQUESTER = "fuzz-requester"  # the operator whose pending changes the fuzzing operator decides
ROLES = ("customer", "enterprise_admin", "payment_service", "operator", FUZZ_ROLE)
schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text()))


def credentials_spoiled(case):
    """Whether the example is about a missing or wrong Authorization header."""
    return ("Authorization", ParameterLocation.HEADER) in set(negated_parameters(case.meta))


VALID_CREDENTIALS: set[str] = set()  # the Authorization values headers_for gave


@schemathesis.check
def authenticated_as_intended(ctx, response, case):
    """A request without one of the tests' valid tokens (missing, or spoiled by the
    example) meets a 401 with its challenge; one with a valid token never does."""
    if response.request.headers.get("Authorization") in VALID_CREDENTIALS:
        assert response.status_code != 401, f"a valid token got a 401: {response.text[:300]}"
    else:
        assert response.status_code == 401, f"a missing or spoiled token got {response.status_code}"
        assert response.headers.get("www-authenticate", [""])[0].startswith("Bearer ")


@schemathesis.check
def rate_limit_headers(ctx, response, case):
    """The document allows an answer without RateLimit-* while limits are off or Redis is
    down; on the test stack neither holds, so every 2xx says where the caller stands."""
    if 200 <= response.status_code < 300:
        missing = {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} - set(response.headers)
        assert not missing, f"a {response.status_code} without {sorted(missing)}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    authenticated_as_intended,
    rate_limit_headers,
]


@pytest.fixture(scope="module")
def pool(stack):
    """Personal wallets with money and a lot, an enterprise tree with money allocated
    down, the transactions that made them, and automation rules on them; for the
    operators' API, fuzz principals with grants (active and pending), the changes that
    wait, and a role."""
    ensure_asset(stack, ASSET)
    wallets = [new_wallet(stack, ASSET, funded=1_000_000, owner_id=OWNER) for _ in range(3)]
    root = http(stack, "wallets", {"owner_id": "fuzz-corp", "asset": ASSET, "model": "enterprise"}, path="/wallets")
    root_id = root.json()["wallet"]["id"]
    members = []
    for team in ("a", "b"):
        member = {"owner_id": f"fuzz-team-{team}", "asset": ASSET, "model": "enterprise", "parent_id": root_id}
        members.append(http(stack, "wallets", member, path="/wallets").json()["wallet"]["id"])
    lot_credit = {"asset": ASSET, "amount": 50_000, "expires_at": "2099-01-01T00:00:00Z"}
    for wallet in (wallets[0], root_id):
        assert (
            http(
                stack, "topup", {"wallet_id": wallet, **lot_credit, "external_ref": key("fuzz")}, key("fuzz-setup")
            ).status_code
            == 201
        )
    for member in members:
        allocation = {"wallet_id": member, "asset": ASSET, "amount": 10_000}
        assert http(stack, "allocate", allocation, key("fuzz-setup")).status_code == 201
    every = [*wallets, root_id, *members]
    rules = [
        http(stack, "wallets", body, path=f"/wallets/{wallet}/rules").json()["rule"]["id"]
        for wallet, body in (
            (wallets[2], {"kind": "low_balance", "threshold": 1000}),
            (root_id, {"kind": "recurring_allocation", "amount": 10, "period": "day", "member_ids": members}),
        )
    ]
    made = {
        "wallets": every,
        "roots": [root_id],
        "rules": rules,
        "lots": [row[0] for row in sql(stack, "SELECT id FROM ledger.lots WHERE wallet_id = ANY(:w)", w=every)],
        "transactions": [
            row[0] for row in sql(stack, "SELECT id FROM ledger.transactions WHERE wallet_id = ANY(:w)", w=every)
        ],
        **access_pool(stack, root_id, wallets[1]),
    }
    before = callers_of_the_other_tests(stack, made)
    yield made
    after = callers_of_the_other_tests(stack, made)
    assert after == before, "the fuzzing changed a principal, grant, role or change the other tests use"


def access_pool(stack, root_id, wallet_id):
    """Fuzz principals, each with active grants and two that wait for a second operator,
    and a credit limit that waits too, all asked for by REQUESTER; and the highest grant
    and change ids before the fuzzing, so that no id of another test's row is ever sent."""
    sql(
        stack,
        "INSERT INTO ledger.roles (name, scopes, description) VALUES (:r, ARRAY['read'], 'fuzzing')"
        " ON CONFLICT DO NOTHING",
        r=FUZZ_ROLE,
    )
    token = principal(stack, REQUESTER, "tester", kind="operator")
    headers_for(stack, "list_roles")  # the fuzzing operator, registered before the snapshot

    def access(path, body):
        answer = http(stack, "access", body, path=path, token=token)
        assert answer.status_code == 201, answer.text
        return answer.json()

    limit = http(stack, "wallets", {"credit_limit": 10**9}, method="PATCH", path=f"/wallets/{wallet_id}", token=token)
    changes = [limit.json()["wallet"]["pending_change_id"]]
    names, grants = [], []
    for index in range(3):
        name = f"fuzz-p-{index}-{uuid.uuid4().hex[:8]}"
        access(
            "/principals",
            {"id": name, "issuer": "https://fuzz.example", "kind": "user", "tenant": "fuzz", "owner_id": OWNER},
        )
        active = access(f"/principals/{name}/grants", {"role": "customer", "boundary": "own"})["grant"]
        tree = access(
            f"/principals/{name}/grants", {"role": "enterprise_admin", "boundary": "tree", "root_wallet_id": root_id}
        )["grant"]
        waiting = [
            access(f"/principals/{name}/grants", {"role": role, "boundary": boundary})["grant"]
            for role, boundary in (("enterprise_admin", "all"), ("payment_service", "own"))
        ]
        names.append(name)
        grants += [active["id"], tree["id"], *(grant["id"] for grant in waiting)]
        changes += [grant["pending_change_id"] for grant in waiting]
    grant_ceiling, change_ceiling, since = sql(
        stack,
        "SELECT (SELECT coalesce(max(id), 0) FROM ledger.grants), (SELECT coalesce(max(id), 0) FROM"
        " ledger.pending_changes), clock_timestamp()",
    )[0]
    return {
        "principals": names,
        "grants": grants,
        "changes": changes,
        "grant_ceiling": grant_ceiling,
        "change_ceiling": change_ceiling,
        "since": since,
    }


def callers_of_the_other_tests(stack, pool):
    """Every principal, grant, role and pending change the fuzzing must leave alone (those
    made before it, but for its own pool's), with its state."""
    found = {}
    for statement, params in (
        (
            "SELECT 'principal:' || id, status || ' ' || coalesce(rate_limits::text, '') FROM ledger.principals"
            " WHERE id NOT LIKE 'fuzz-%' AND created_at < :since",
            {"since": pool["since"]},
        ),
        (
            "SELECT 'grant:' || id, status FROM ledger.grants WHERE id <= :most AND NOT id = ANY(:pool)",
            {"most": pool["grant_ceiling"], "pool": pool["grants"]},
        ),
        (
            "SELECT 'change:' || id, status FROM ledger.pending_changes WHERE id <= :most AND NOT id = ANY(:pool)",
            {"most": pool["change_ceiling"], "pool": pool["changes"]},
        ),
        ("SELECT 'role:' || name, rate_limits::text FROM ledger.roles WHERE name <> :fuzz", {"fuzz": FUZZ_ROLE}),
    ):
        found.update(dict(sql(stack, statement, **params)))
    return found


def whole(value):
    """JSON Schema counts 3.0 as an integer; the API refuses it (docs/api.md): send 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {name: whole(item) for name, item in value.items()}
    return value


def on_the_wire(value):
    """A path value as its URL segment will read: an invalid example's 7 (for a name) or
    "7" (for an id) names the same row as a valid one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(on_the_wire(item)) for item in value)
    return value if isinstance(value, str) else str(value)


def fenced(path_parameters, pool, rng):
    """The operators' API's path values: a pool's principal, grant, change or role most
    of the time, and otherwise a name or id nothing else holds (a 404 all the same).
    A value that can't name anything (an invalid example's) stays as it is."""
    for name, choices in (("principal_id", pool["principals"]), ("role", [FUZZ_ROLE])):
        if name not in path_parameters:
            continue
        wire = on_the_wire(path_parameters[name])
        if NameConverter.shape.fullmatch(wire) and wire not in choices:
            if rng.random() < 0.8:
                path_parameters[name] = rng.choice(choices)
            else:
                path_parameters[name] = wire if wire.startswith("fuzz-") else ("fuzz-" + wire)[:128]
    for name, choices, ceiling in (
        ("grant_id", pool["grants"], pool["grant_ceiling"]),
        ("change_id", pool["changes"], pool["change_ceiling"]),
    ):
        if name not in path_parameters:
            continue
        wire = on_the_wire(path_parameters[name])
        if wire.isascii() and wire.isdigit() and 0 < int(wire) <= MAX_ID and int(wire) not in choices:
            if rng.random() < 0.8:
                path_parameters[name] = rng.choice(choices)
            else:  # past every row the other tests made
                path_parameters[name] = int(wire) + ceiling if int(wire) <= ceiling else int(wire)


def realistic(case, pool):
    """Point most of a valid request's ids at the pool, and most amounts at what a wallet
    can pay. The choices follow from the generated request (Hypothesis resets `random`
    alike for every example), so a failing example replays the same way."""
    rng = random.Random(json.dumps([case.path_parameters, case.query, case.body], sort_keys=True, default=str))
    if case.path_parameters:
        fenced(case.path_parameters, pool, rng)
    if case.meta is not None and not case.meta.generation.mode.is_positive:
        return
    if isinstance(case.body, dict):
        case.body = whole(case.body)
    pick = {
        "wallet_id": pool["wallets"],
        "from_wallet_id": pool["wallets"],
        "to_wallet_id": pool["wallets"],
        "parent_id": pool["roots"],
        "root_wallet_id": pool["roots"],
        "lot_id": pool["lots"],
        "transaction_id": pool["transactions"],
        "rule_id": pool["rules"],
    }
    for values in (case.path_parameters, case.body if isinstance(case.body, dict) else None):
        for name in list(values or ()):
            if name in pick and isinstance(values[name], int) and rng.random() < 0.8:
                values[name] = rng.choice(pick[name])
    if isinstance(case.body, dict):
        if isinstance(case.body.get("asset"), str) and rng.random() < 0.8:
            case.body["asset"] = ASSET
        if isinstance(case.body.get("amount"), int) and rng.random() < 0.7:
            case.body["amount"] = rng.randint(1, 5_000)
        if isinstance(case.body.get("role"), str) and rng.random() < 0.7:
            case.body["role"] = rng.choice(ROLES)
    if case.query and "owner_id" in case.query and rng.random() < 0.5:
        case.query["owner_id"] = OWNER


def fresh_idempotency_key(case):
    """A valid Idempotency-Key becomes one never used before (an invalid one stays)."""
    sent = (case.headers or {}).get("Idempotency-Key")
    if isinstance(sent, str) and 0 < len(sent) <= 255 and sent.isascii() and sent.isprintable() and sent.strip():
        case.headers["Idempotency-Key"] = key("fuzz")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_the_contract(case, stack, pool):
    function = case.operation.path.split("/")[1]  # a path starts with its function's name
    realistic(case, pool)
    fresh_idempotency_key(case)
    credentials = {}  # a missing or spoiled token stays as generated: it must meet a 401
    if not credentials_spoiled(case):
        credentials = headers_for(stack, case.operation.definition.raw["operationId"])
        VALID_CREDENTIALS.add(credentials["Authorization"])
    case.call_and_validate(base_url=stack.function_url(function), headers=credentials, checks=CHECKS, timeout=30)
