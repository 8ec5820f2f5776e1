"""Authorization rules (common/auth/callers.py): scopes, boundaries, 403 against 404."""

import pytest

from common.auth.callers import Caller, Grant, Principal, as_seen_by, authorize, visible, within
from common.errors import Forbidden, NotFound
from tests.unit.wallet_facts import WALLETS

asked: list[list[int]] = []


def facts(ids):
    asked.append(ids)
    return {i: WALLETS[i] for i in ids if i in WALLETS}


def caller(*grants, owner_id=None):
    return Caller(Principal("p", "iss", "sub", "user", "t", owner_id, tuple(grants)), "req")


CUSTOMER = Grant("customer", frozenset({"read", "transfer"}), "own")
ACME_ADMIN = Grant("enterprise_admin", frozenset({"read", "allocate", "wallet_admin"}), "tree", 10)
RESEARCH_ADMIN = Grant("enterprise_admin", frozenset({"read", "allocate"}), "tree", 11)
PAYMENTS = Grant("payment_service", frozenset({"topup", "read"}), "all")


def test_an_own_grant_covers_exactly_the_owners_wallets():
    alice = caller(CUSTOMER, owner_id="alice")
    assert authorize(alice, "transfer", [1], facts) is CUSTOMER
    with pytest.raises(NotFound) as refused:
        authorize(alice, "transfer", [1, 2], facts)
    assert refused.value.code == "wallet_not_found" and refused.value.details == {"wallet_id": 2}


def test_an_own_grant_without_an_owner_id_covers_nothing():
    assert not within(CUSTOMER, caller(CUSTOMER).principal, WALLETS[1])


def test_a_tree_grant_covers_its_root_and_everything_below_and_nothing_above():
    research = caller(RESEARCH_ADMIN)
    assert authorize(research, "read", [11, 12], facts) is RESEARCH_ADMIN
    for outside in (10, 20, 1):
        with pytest.raises(NotFound):
            authorize(research, "read", [outside], facts)


def test_a_missing_scope_is_403_and_asks_no_facts():
    asked.clear()
    with pytest.raises(Forbidden) as refused:
        authorize(caller(CUSTOMER, owner_id="alice"), "topup", [1], facts)
    assert refused.value.status == 403 and refused.value.code == "forbidden"
    assert asked == []


def test_a_wallet_that_does_not_exist_answers_like_one_outside_the_boundary():
    alice = caller(CUSTOMER, owner_id="alice")
    with pytest.raises(NotFound) as missing:
        authorize(alice, "read", [404], facts)
    with pytest.raises(NotFound) as elsewhere:
        authorize(alice, "read", [2], facts)
    assert missing.value.code == elsewhere.value.code == "wallet_not_found"


def test_an_unbounded_grant_needs_no_facts():
    asked.clear()
    assert authorize(caller(PAYMENTS), "topup", [1, 404], facts) is PAYMENTS
    assert asked == []


def test_system_accounts_are_outside_every_bounded_grant():
    assert not within(ACME_ADMIN, caller(ACME_ADMIN).principal, WALLETS[99])
    assert within(PAYMENTS, caller(PAYMENTS).principal, WALLETS[99])


def test_the_grant_that_covers_all_the_wallets_is_chosen():
    both = caller(RESEARCH_ADMIN, ACME_ADMIN)
    assert authorize(both, "allocate", [12], facts) is RESEARCH_ADMIN
    assert authorize(both, "allocate", [10, 12], facts) is ACME_ADMIN


def test_visible_filters_by_the_read_grants():
    alice = caller(CUSTOMER, owner_id="alice")
    assert [w.id for w in visible(alice, WALLETS.values())] == [1]


def test_the_actor_names_principal_role_tenant_and_request():
    alice = caller(CUSTOMER, owner_id="alice")
    assert alice.actor(CUSTOMER) == {
        "principal": "p",
        "issuer": "iss",
        "role": "customer",
        "tenant": "t",
        "request_id": "req",
    }
    given = Caller(alice.principal, "req", client_request_id="mine-1")
    assert given.actor(CUSTOMER) == {**alice.actor(CUSTOMER), "client_request_id": "mine-1"}


def test_a_bounded_grant_is_never_the_answer_about_no_wallet():
    """A bounded grant covers wallets, never nothing: asking about none is a bug, refused
    rather than answered with whichever grant comes first."""
    for bounded in (caller(CUSTOMER, owner_id="alice"), caller(ACME_ADMIN)):
        for scope in ("read", "wallet_admin"):
            if bounded.grants_with(scope):
                with pytest.raises(ValueError):
                    authorize(bounded, scope, [], facts)
    assert authorize(caller(PAYMENTS), "read", [], facts) is PAYMENTS  # every wallet covers nothing too
    with pytest.raises(Forbidden):
        authorize(caller(CUSTOMER, owner_id="alice"), "topup", [], facts)


TRANSACTION = {
    "id": 5,
    "idempotency_key": "k",
    "actor": {"principal": "acme-admin", "tenant": "t"},
    "entries": [
        {"wallet_id": 10, "amount": -5, "balance_after": 95},
        {"wallet_id": 11, "amount": 5, "balance_after": 5},
        {"wallet_id": 99, "amount": 0, "balance_after": None},
    ],
}


def test_a_bounded_reader_sees_no_balance_outside_its_grants_and_only_its_tenants_actor():
    research = caller(RESEARCH_ADMIN)  # tenant "t", reads below 11
    seen = as_seen_by(research, TRANSACTION, facts)
    assert seen.keys() == TRANSACTION.keys()
    assert [e["balance_after"] for e in seen["entries"]] == [None, 5, None]
    assert seen["actor"] == TRANSACTION["actor"] and seen["idempotency_key"] == "k"
    other_tenant = Caller(Principal("q", "iss", "sub", "user", "t2", None, (ACME_ADMIN,)), "req")
    seen = as_seen_by(other_tenant, TRANSACTION, facts)
    assert seen["actor"] is None and seen["idempotency_key"] is None
    assert [e["balance_after"] for e in seen["entries"]] == [95, 5, None]
    # a reader of every wallet sees every balance and who posted, but a key only of its
    # own tenant: a key never leaves its tenant (issue 14)
    unbounded = as_seen_by(caller(PAYMENTS), {**TRANSACTION, "actor": {"tenant": "x"}}, facts)
    assert unbounded == {**TRANSACTION, "actor": {"tenant": "x"}, "idempotency_key": None}
