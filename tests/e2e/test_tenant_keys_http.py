"""Idempotency keys are the caller's tenant's (issue 13): two tenants sending one key
string at the same moment get two independent results, neither a replay of the other
nor a 422 caused by the other, in Firestore (one record per tenant) and in Postgres
(one posting per tenant under the key). Within a tenant a key stays one request."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from common.http import REPLAYED_HEADER
from tests.e2e.footprint import idempotency_record, idempotency_records
from tests.support import ensure_asset, http, key, new_wallet, principal, sql

ROUNDS = 5  # each a fresh key, sent by both tenants at once
BASE_AMOUNTS = (11, 23)  # different bodies: a replay of the other tenant's would show


@dataclass(frozen=True)
class Tenant:
    name: str
    token: str  # the tenant's payment service
    colleague: str  # another payment service of the same tenant
    customer: str  # an end user of the tenant, transferring between its own wallets
    wallet: int
    wallets: tuple[int, int]  # the customer's


@pytest.fixture(scope="module")
def tenants(stack) -> tuple[Tenant, Tenant]:
    ensure_asset(stack)
    made = []
    for name in ("k-tenant-a", "k-tenant-b"):
        owner = f"{name}-user"
        made.append(
            Tenant(
                name,
                principal(stack, f"{name}-payments", "payment_service", "all", tenant=name),
                principal(stack, f"{name}-payments-2", "payment_service", "all", tenant=name),
                principal(stack, owner, "customer", "own", tenant=name, owner_id=owner, kind="user"),
                new_wallet(stack),
                (new_wallet(stack, funded=1_000, owner_id=owner), new_wallet(stack, owner_id=owner)),
            )
        )
    return made[0], made[1]


def topup(tenant: Tenant, amount: int, reference: str) -> tuple[str, dict]:
    return "topup", {"wallet_id": tenant.wallet, "asset": "TST", "amount": amount, "external_ref": reference}


def transfer(tenant: Tenant, amount: int, reference: str) -> tuple[str, dict]:
    source, target = tenant.wallets
    return "transfer", {"from_wallet_id": source, "to_wallet_id": target, "asset": "TST", "amount": amount}


ACTIONS = {"topup": (topup, "token"), "transfer": (transfer, "customer")}


def at_once(calls):
    """Run the calls on threads released together; their responses in order."""
    barrier, responses = threading.Barrier(len(calls)), [None] * len(calls)

    def run(index, call):
        barrier.wait()
        responses[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.parametrize("action", list(ACTIONS))
def test_two_tenants_one_key_at_once_get_two_independent_postings(stack, tenants, action):
    build, caller = ACTIONS[action]

    def send(tenant: Tenant, amount: int, idempotency_key: str):
        function, body = build(tenant, amount, idempotency_key)  # a payment's reference per key
        return http(stack, function, body, idempotency_key, token=getattr(tenant, caller))

    for round_ in range(ROUNDS):
        shared = key(f"k-shared-{action}")
        amounts = [base + round_ for base in BASE_AMOUNTS]
        responses = at_once(
            [
                lambda t=tenant, a=amount, k=shared: send(t, a, k)
                for tenant, amount in zip(tenants, amounts, strict=True)
            ]
        )
        posted = []
        for tenant, amount, response in zip(tenants, amounts, responses, strict=True):
            assert response.status_code == 201, (tenant.name, response.text)
            assert REPLAYED_HEADER not in response.headers, (tenant.name, "answered with the other tenant's posting")
            transaction = response.json()["transaction"]
            assert (transaction["amount"], transaction["actor"]["tenant"]) == (amount, tenant.name)
            posted.append(transaction["id"])
        rows = sql(
            stack, "SELECT tenant, id FROM ledger.transactions WHERE idempotency_key = :k ORDER BY tenant", k=shared
        )
        assert rows == [[tenant.name, posted_id] for tenant, posted_id in zip(tenants, posted, strict=True)]
        assert posted[0] != posted[1]
        assert idempotency_records(["", "tester", *(t.name for t in tenants)], shared) == [t.name for t in tenants]

    # Within a tenant the key stays one request: the same again is a replay, and
    # another request under it is refused.
    for tenant, amount in zip(tenants, amounts, strict=True):
        again = send(tenant, amount, shared)
        assert again.status_code == 201 and again.headers.get(REPLAYED_HEADER) == "true", again.text
        assert again.json()["transaction"]["actor"]["tenant"] == tenant.name
        reused = send(tenant, 999, shared)
        assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused", reused.text
    assert sql(stack, "SELECT count(*) FROM ledger.transactions WHERE idempotency_key = :k", k=shared) == [[2]]


def test_colleagues_in_one_tenant_share_its_keys(stack, tenants):
    a, _ = tenants
    k = key("k-colleagues")
    _, body = topup(a, 31, key())
    first = http(stack, "topup", body, k, token=a.token)
    assert first.status_code == 201 and REPLAYED_HEADER not in first.headers
    same = http(stack, "topup", body, k, token=a.colleague)
    assert same.status_code == 201 and same.headers.get(REPLAYED_HEADER) == "true"
    assert same.json() == first.json()
    different = http(stack, "topup", {**body, "amount": 32}, k, token=a.colleague)
    assert different.status_code == 422 and different.json()["error"]["code"] == "idempotency_key_reused"
    record = idempotency_record(a.name, k)
    assert record is not None and record["key"] == k


def test_two_tenants_extend_lots_under_one_key(stack, tenants):
    """Lot extensions keep their keys in Postgres, scoped the same way."""
    admins = [
        principal(stack, "k-backoffice", "back_office", "all", tenant="k-backoffice"),
        principal(stack, "k-ops", "operator", "all", tenant="k-ops", kind="operator"),
    ]
    lots = []
    for _ in admins:
        wallet = new_wallet(stack)
        http(stack, "bonus", {"wallet_id": wallet, "asset": "TST", "amount": 9, "expires_at": in_days(5)}, key())
        lots.append(http(stack, "wallets", method="GET", path=f"/wallets/{wallet}/lots").json()["lots"][0]["id"])
    shared = key("k-extend")
    # Each body is fixed once: the replay below must send the same bytes, even if a second ticks over in between.
    extend = [
        lambda t=token, lot=lot, expires_at=in_days(days): http(
            stack, "wallets", {"expires_at": expires_at}, shared, path=f"/lots/{lot}/extend", token=t
        )
        for token, lot, days in zip(admins, lots, (20, 40), strict=True)
    ]
    for response in at_once(extend):
        assert response.status_code == 200 and REPLAYED_HEADER not in response.headers, response.text
    rows = sql(
        stack, "SELECT tenant, lot_id FROM ledger.lot_extensions WHERE idempotency_key = :k ORDER BY tenant", k=shared
    )
    assert rows == [["k-backoffice", lots[0]], ["k-ops", lots[1]]]
    again = extend[0]()
    assert again.status_code == 200 and again.headers.get(REPLAYED_HEADER) == "true", again.text


def test_two_tenants_voiding_one_transaction_under_one_key(stack, tenants):
    """The first tenant's void stands; the second tenant's, under the same key string,
    is refused as already voided (naming the void), never answered with the first's
    void as if it were its own retry. Each tenant's retry keeps its own answer."""
    voiders = [
        principal(stack, f"{tenant.name}-backoffice", "back_office", "all", tenant=tenant.name) for tenant in tenants
    ]
    a, _ = tenants
    shared = key("k-void")
    target = http(stack, "topup", topup(a, 41, key())[1], key(), token=a.token).json()["transaction"]["id"]
    first = http(stack, "void", {"transaction_id": target}, shared, token=voiders[0])
    assert first.status_code == 201 and REPLAYED_HEADER not in first.headers, first.text
    void = first.json()["transaction"]
    second = http(stack, "void", {"transaction_id": target}, shared, token=voiders[1])
    assert second.status_code == 422 and REPLAYED_HEADER not in second.headers, second.text
    assert second.json()["error"]["code"] == "already_voided"
    assert second.json()["error"]["details"] == {"transaction_id": target, "voided_by": void["id"]}

    again = [http(stack, "void", {"transaction_id": target}, shared, token=voider) for voider in voiders]
    assert again[0].status_code == 201 and again[0].headers.get(REPLAYED_HEADER) == "true"
    assert again[0].json() == first.json()
    assert again[1].status_code == 422 and again[1].json()["error"]["code"] == "already_voided"
    voids = sql(
        stack, "SELECT tenant, idempotency_key FROM ledger.transactions WHERE voids_transaction_id = :t", t=target
    )
    assert voids == [[a.name, shared]]


def test_two_tenants_voiding_one_transaction_under_one_key_at_once(stack, tenants):
    voiders = [
        principal(stack, f"{tenant.name}-backoffice", "back_office", "all", tenant=tenant.name) for tenant in tenants
    ]
    a, _ = tenants
    for _ in range(ROUNDS):
        shared = key("k-void-race")
        target = http(stack, "topup", topup(a, 43, key())[1], key(), token=a.token).json()["transaction"]["id"]
        responses = at_once(
            [
                lambda t=token, body={"transaction_id": target}, k=shared: http(stack, "void", body, k, token=t)
                for token in voiders
            ]
        )
        assert all(REPLAYED_HEADER not in response.headers for response in responses)
        assert sorted(response.status_code for response in responses) == [201, 422], [r.text for r in responses]
        won = next(i for i, response in enumerate(responses) if response.status_code == 201)
        lost = responses[1 - won].json()["error"]
        assert lost["code"] == "already_voided"
        voids = sql(
            stack,
            "SELECT tenant FROM ledger.transactions WHERE voids_transaction_id = :t AND idempotency_key = :k",
            t=target,
            k=shared,
        )
        assert voids == [[tenants[won].name]]


def in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
