"""What a transaction answer shows a caller bounded in what it reads (issue 13's
security review): the running balance of a wallet outside its read grants is null, and
the actor and idempotency key of another tenant's posting are null, in the 201 of a
money action, in its replay and in GET /transactions/{id}. The document keeps its
keys; a caller that reads every wallet sees everything but another tenant's key, which
never leaves its tenant (issue 14). Lookups by key and by business id stay within the
caller's tenant.

The world: an enterprise tree root > division > team (tenant v-acme), and a customer's
two personal wallets (tenant v-alice), set up as the tests' own principal.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support import HTTP_TESTER, ensure_asset, http, key, principal, sql


@dataclass(frozen=True)
class World:
    root: int
    division: int
    team: int
    alice: tuple[int, int]
    tokens: dict[str, str]


def ok(response, status=201):
    assert response.status_code == status, response.text
    return response.json()


def wallet(stack, **body) -> int:
    return ok(http(stack, "wallets", {"asset": "TST", **body}))["wallet"]["id"]


def read(stack, transaction_id: int, token: str) -> dict:
    return ok(http(stack, "wallets", method="GET", path=f"/transactions/{transaction_id}", token=token), 200)[
        "transaction"
    ]


def balances(transaction: dict) -> dict[int, int | None]:
    return {entry["wallet_id"]: entry["balance_after"] for entry in transaction["entries"]}


@pytest.fixture(scope="module")
def world(stack):
    ensure_asset(stack)
    root = wallet(stack, owner_id="v-acme", model="enterprise")
    division = wallet(stack, owner_id="v-acme-research", model="enterprise", parent_id=root)
    team = wallet(stack, owner_id="v-acme-research-ml", model="enterprise", parent_id=division)
    alice = (wallet(stack, owner_id="v-alice"), wallet(stack, owner_id="v-alice"))
    ok(http(stack, "topup", {"wallet_id": root, "asset": "TST", "amount": 10_000, "external_ref": key("v")}, key()))
    ok(http(stack, "topup", {"wallet_id": alice[0], "asset": "TST", "amount": 1_000, "external_ref": key("v")}, key()))
    # A role that may only allocate: a division's budget holder draws from the root
    # (an allocate grant over the whole tree) but reads only its division.
    sql(
        stack,
        "INSERT INTO ledger.roles (name, scopes, description) VALUES ('v_budget', ARRAY['allocate'],"
        " 'allocate only (tests)') ON CONFLICT DO NOTHING",
    )
    principal(stack, "v-budget", "v_budget", "tree", root, tenant="v-acme", kind="user")
    tokens = {
        "acme_admin": principal(stack, "v-acme-admin", "enterprise_admin", "tree", root, "v-acme", kind="user"),
        "division_admin": principal(
            stack, "v-division-admin", "enterprise_admin", "tree", division, "v-acme", kind="user"
        ),
        "budget": principal(stack, "v-budget", "enterprise_admin", "tree", division, "v-acme", kind="user"),
        "alice": principal(stack, "v-alice", "customer", "own", tenant="v-alice", owner_id="v-alice", kind="user"),
        "metering": principal(stack, "v-metering", "metering_service", "all", tenant="v-metering"),
        "backoffice": principal(stack, "v-backoffice", "back_office", "all", tenant="v-backoffice"),
        "ops": principal(stack, "v-ops", "operator", "all", tenant="v-ops", kind="operator"),
    }
    return World(root, division, team, alice, tokens)


def test_a_division_sees_no_balance_above_its_root(stack, world):
    allocated = ok(
        http(
            stack,
            "allocate",
            {"wallet_id": world.division, "asset": "TST", "amount": 500},
            key("v-alloc"),
            token=world.tokens["acme_admin"],
        )
    )["transaction"]
    assert None not in balances(allocated).values()  # the enterprise's admin reads its whole tree

    seen = read(stack, allocated["id"], world.tokens["division_admin"])
    assert set(seen) == set(read(stack, allocated["id"], world.tokens["ops"]))
    assert balances(seen) == {world.root: None, world.division: balances(allocated)[world.division]}
    # the same tenant's posting: who made it, and under which key, stay visible
    assert seen["actor"] == allocated["actor"] and seen["idempotency_key"] == allocated["idempotency_key"]

    # inside its own tree, nothing is hidden from it
    own = ok(
        http(
            stack,
            "allocate",
            {"wallet_id": world.team, "asset": "TST", "amount": 200},
            key("v-alloc"),
            token=world.tokens["division_admin"],
        )
    )["transaction"]
    assert None not in balances(own).values()


def test_a_money_answer_and_its_replay_hide_a_balance_outside_the_read_grants(stack, world):
    """The budget holder may allocate from the root, but reads only its division: the
    root's running balance is not in its answer, first time or replayed."""
    idempotency_key = key("v-budget")
    body = {"wallet_id": world.division, "asset": "TST", "amount": 300}
    first = http(stack, "allocate", body, idempotency_key, token=world.tokens["budget"])
    again = http(stack, "allocate", body, idempotency_key, token=world.tokens["budget"])
    assert again.headers.get("Idempotent-Replayed") == "true"
    for answer in (ok(first)["transaction"], ok(again)["transaction"]):
        assert balances(answer)[world.root] is None and balances(answer)[world.division] is not None
        assert answer["actor"]["principal"] == "v-budget" and answer["idempotency_key"] == idempotency_key
    full = read(stack, ok(first)["transaction"]["id"], world.tokens["ops"])
    assert None not in balances(full).values()
    assert set(full) == set(ok(first)["transaction"]) | {"voided_by"}


def test_a_customer_does_not_learn_who_voided_its_usage(stack, world):
    used = ok(
        http(
            stack,
            "usage",
            {"wallet_id": world.alice[0], "asset": "TST", "amount": 7, "usage_id": key("v-u"), "product": "gpu"},
            key("v-use"),
            token=world.tokens["metering"],
        )
    )["transaction"]
    void = http(stack, "void", {"transaction_id": used["id"]}, key("v-void"), token=world.tokens["backoffice"])
    voided = ok(void)["transaction"]
    assert voided["actor"]["principal"] == "v-backoffice"  # its own answer names it

    for transaction in (voided, used):
        seen = read(stack, transaction["id"], world.tokens["alice"])
        full = read(stack, transaction["id"], world.tokens["ops"])
        assert set(seen) == set(full)
        assert seen["actor"] is None and seen["idempotency_key"] is None
        # an operator reads every wallet and sees who posted, but no other tenant's key
        assert full["actor"] == transaction["actor"] and full["idempotency_key"] is None
        assert balances(seen) == balances(full)  # her wallet's, and system accounts keep none anyway
        assert {k: v for k, v in seen.items() if k not in ("actor", "idempotency_key")} == {
            k: v for k, v in full.items() if k not in ("actor", "idempotency_key")
        }

    # her own posting names her
    transfer = ok(
        http(
            stack,
            "transfer",
            {"from_wallet_id": world.alice[0], "to_wallet_id": world.alice[1], "asset": "TST", "amount": 5},
            key("v-pay"),
            token=world.tokens["alice"],
        )
    )["transaction"]
    seen = read(stack, transfer["id"], world.tokens["alice"])
    assert seen["actor"]["principal"] == "v-alice" and seen["idempotency_key"] == transfer["idempotency_key"]


def find(stack, token: str, **query) -> object:
    path = "/transactions?" + "&".join(f"{name}={value}" for name, value in query.items())
    return http(stack, "wallets", method="GET", path=path, token=token)


def test_a_transaction_is_found_by_its_key_and_business_id_within_the_tenant_only(stack, world):
    """The metering service finds its usage by the key it posted under and by the usage
    id; the payments of another tenant, which read every wallet, find neither, and no
    answer to them holds the key."""
    payments = principal(stack, "v-payments", "payment_service", "all", tenant="v-payments")
    idempotency_key, usage_id = key("v-find"), key("v-usage")
    body = {"wallet_id": world.alice[0], "asset": "TST", "amount": 3, "usage_id": usage_id, "product": "gpu"}
    used = ok(http(stack, "usage", body, idempotency_key, token=world.tokens["metering"]))["transaction"]
    by_id = read(stack, used["id"], world.tokens["metering"])
    for query in ({"idempotency_key": idempotency_key}, {"usage_id": usage_id}):
        assert ok(find(stack, world.tokens["metering"], **query), 200) == {"transaction": by_id}
        other = find(stack, payments, **query)
        assert other.status_code == 404 and other.json()["error"]["code"] == "transaction_not_found"
        assert idempotency_key not in other.text
    seen_by_other = http(stack, "wallets", method="GET", path=f"/transactions/{used['id']}", token=payments)
    assert seen_by_other.status_code == 200 and idempotency_key not in seen_by_other.text
    assert seen_by_other.json()["transaction"]["idempotency_key"] is None


def test_a_payment_is_found_by_its_reference_and_action(stack, world):
    reference, idempotency_key = key("v-psp"), key("v-pay")
    body = {"wallet_id": world.alice[1], "asset": "TST", "amount": 9, "external_ref": reference}
    topped = ok(http(stack, "topup", body, idempotency_key))["transaction"]
    found = ok(find(stack, http_token(stack), external_ref=reference, action="topup"), 200)["transaction"]
    assert (found["id"], found["idempotency_key"]) == (topped["id"], idempotency_key)
    missing = find(stack, http_token(stack), external_ref=reference, action="addon")
    assert missing.status_code == 404 and missing.json()["error"]["details"] is None


def test_a_transaction_outside_the_boundary_is_not_found_by_its_key(stack, world):
    """Alice's tenant colleague could know the key; what she can't read stays a 404 naming nothing."""
    colleague = principal(stack, "v-alice-2", "customer", "own", tenant="v-alice", owner_id="v-alice-2", kind="user")
    idempotency_key = key("v-own")
    body = {"from_wallet_id": world.alice[0], "to_wallet_id": world.alice[1], "asset": "TST", "amount": 1}
    ok(http(stack, "transfer", body, idempotency_key, token=world.tokens["alice"]))
    hidden = find(stack, colleague, idempotency_key=idempotency_key)
    assert hidden.status_code == 404 and hidden.json()["error"]["details"] is None


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?usage_id=u&idempotency_key=k",
        "?external_ref=r",
        "?action=topup&usage_id=u",
        "?external_ref=r&action=bonus",
    ],
)
def test_a_lookup_names_exactly_one_thing(stack, world, query):
    response = http(stack, "wallets", method="GET", path=f"/transactions{query}", token=world.tokens["metering"])
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_failed", response.text


def http_token(stack) -> str:
    return principal(stack, HTTP_TESTER, "tester")
