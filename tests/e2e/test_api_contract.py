"""The API contract, fuzzed: Schemathesis sends each operation of docs/openapi.json
requests made from the document, valid and invalid, to the running function that
serves it. No answer may be a 5xx, every answer must conform to the document (status,
content type, headers, body), invalid data must be refused, and the money invariants
hold afterwards (the tier's autouse check, after each operation).

Most valid requests name wallets, lots and transactions of a small pool made first,
and an amount a wallet can pay, so they reach the ledger's rules instead of a 404.
Each money request gets a fresh Idempotency-Key.

LEDGER_FUZZ_EXAMPLES sets the examples per operation: few in `make test`, many in
`make fuzz`.
"""

from __future__ import annotations

import json
import os
import random

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.openapi import DOCUMENT
from tests.support import ensure_asset, headers_for, http, key, new_wallet, sql

EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "10"))
ASSET = "FUZ"
OWNER = "fuzz-owner"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
DOCUMENT_AS_TESTED = json.loads(DOCUMENT.read_text())
if "Authorization" not in headers_for("topup"):
    # Until the functions take tokens (issue 13), a request without one is not refused:
    # fuzz everything but that. With headers_for giving a token, this goes.
    del DOCUMENT_AS_TESTED["security"]
schema = schemathesis.openapi.from_dict(DOCUMENT_AS_TESTED)


@pytest.fixture(scope="module")
def pool(stack):
    """Personal wallets with money and a lot, an enterprise tree with money allocated
    down, and the transactions that made them."""
    ensure_asset(stack, ASSET)
    wallets = [new_wallet(stack, ASSET, funded=1_000_000, owner_id=OWNER) for _ in range(3)]
    root = http(stack, "wallets", {"owner_id": "fuzz-corp", "asset": ASSET, "model": "enterprise"}, path="/wallets")
    root_id = root.json()["wallet"]["id"]
    members = []
    for team in ("a", "b"):
        member = {"owner_id": f"fuzz-team-{team}", "asset": ASSET, "model": "enterprise", "parent_id": root_id}
        members.append(http(stack, "wallets", member, path="/wallets").json()["wallet"]["id"])
    lot_credit = {"asset": ASSET, "amount": 50_000, "external_ref": "fuzz", "expires_at": "2099-01-01T00:00:00Z"}
    for wallet in (wallets[0], root_id):
        assert http(stack, "topup", {"wallet_id": wallet, **lot_credit}, key("fuzz-setup")).status_code == 201
    for member in members:
        allocation = {"wallet_id": member, "asset": ASSET, "amount": 10_000}
        assert http(stack, "allocate", allocation, key("fuzz-setup")).status_code == 201
    every = [*wallets, root_id, *members]
    return {
        "wallets": every,
        "roots": [root_id],
        "lots": [row[0] for row in sql(stack, "SELECT id FROM ledger.lots WHERE wallet_id = ANY(:w)", w=every)],
        "transactions": [
            row[0] for row in sql(stack, "SELECT id FROM ledger.transactions WHERE wallet_id = ANY(:w)", w=every)
        ],
    }


def whole(value):
    """JSON Schema counts 3.0 as an integer; the API refuses it (docs/api.md): send 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {name: whole(item) for name, item in value.items()}
    return value


def realistic(case, pool):
    """Point most of a valid request's ids at the pool, and most amounts at what a wallet
    can pay. The choices follow from the generated request (Hypothesis resets `random`
    alike for every example), so a failing example replays the same way."""
    if case.meta is not None and not case.meta.generation.mode.is_positive:
        return
    if isinstance(case.body, dict):
        case.body = whole(case.body)
    rng = random.Random(json.dumps([case.path_parameters, case.query, case.body], sort_keys=True, default=str))
    pick = {
        "wallet_id": pool["wallets"],
        "from_wallet_id": pool["wallets"],
        "to_wallet_id": pool["wallets"],
        "parent_id": pool["roots"],
        "lot_id": pool["lots"],
        "transaction_id": pool["transactions"],
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
    if case.query and "owner_id" in case.query and rng.random() < 0.5:
        case.query["owner_id"] = OWNER


def fresh_idempotency_key(case):
    """A valid Idempotency-Key becomes one never used before (an invalid one stays)."""
    sent = (case.headers or {}).get("Idempotency-Key")
    if isinstance(sent, str) and 0 < len(sent) <= 255 and sent.isascii() and sent.isprintable() and sent.strip():
        case.headers["Idempotency-Key"] = key("fuzz")


def credentials(case, operation_id):
    """The headers that authenticate the call, unless the example is about its headers
    being wrong: a missing or bad token must meet a 401, not be replaced by a good one."""
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta is not None else None
    return {} if headers is not None and headers.mode.is_negative else headers_for(operation_id)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_the_contract(case, stack, pool):
    function = case.operation.path.split("/")[1]  # a path starts with its function's name
    realistic(case, pool)
    fresh_idempotency_key(case)
    operation_id = case.operation.definition.raw["operationId"]
    case.call_and_validate(
        base_url=stack.function_url(function),
        headers=credentials(case, operation_id),
        checks=CHECKS,
        timeout=30,
    )
