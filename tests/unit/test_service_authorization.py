"""LedgerService's authorization (common/service.py) with in-memory stand-ins: which
caller may do what where, and that a refusal reaches no adapter. No I/O: the access
store answers from WALLETS, and the ledger, admin and queries record what they are
asked. The same rules over HTTP, against the real stack: tests/e2e/test_callers_http.py.

The wallets: alice's and bob's personal wallets; acme's tree 10 > 11 > 12; globex's
root 20; a system account 99. Transaction 500 moved money on 11 and 12, 501 on 11 and
20; lot 700 is on 11, lot 701 on 20.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.auth.callers import Caller, Grant, Principal
from common.errors import Forbidden, NotFound
from common.idempotency import Outcome
from common.ledger import commands
from common.service import LedgerService
from tests.unit.wallet_facts import WALLETS

TRANSACTIONS = {500: [11, 12], 501: [11, 20]}
LOTS = {700: 11, 701: 20}

TREE = frozenset({"read", "transfer", "allocate", "wallet_admin"})
ACME_ADMIN = Grant("enterprise_admin", TREE, "tree", 10)
RESEARCH_ADMIN = Grant("enterprise_admin", TREE, "tree", 11)
CUSTOMER = Grant("customer", frozenset({"read", "transfer"}), "own")
SELF_SERVICE = Grant("self_service", frozenset({"read", "wallet_admin"}), "own")
BACK_OFFICE = Grant("back_office", frozenset({"bonus", "void", "read", "wallet_admin"}), "all")
ACME_VOIDER = Grant("acme_support", frozenset({"void", "read"}), "tree", 10)
METERING = Grant("metering_service", frozenset({"usage"}), "all")


def member(parent_id, **fields):
    return commands.CreateWallet(owner_id="o", asset="TST", model="enterprise", parent_id=parent_id, **fields)


def caller(*grants, owner_id=None, tenant="t"):
    return Caller(Principal("p", "iss", "sub", "user", tenant, owner_id, tuple(grants)), "req")


class FakeAccess:
    def wallet_facts(self, ids):
        return {i: WALLETS[i] for i in ids if i in WALLETS}

    def transaction_wallets(self, transaction_id):
        return TRANSACTIONS.get(transaction_id)

    def lot_wallet(self, lot_id):
        return LOTS.get(lot_id)


class Recorder:
    """Records every call by name; answers from `answers` (a value or a function of the
    call's arguments), else None."""

    def __init__(self, **answers):
        self.calls = []
        self._answers = answers

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, *args))
            answer = self._answers.get(name)
            return answer(*args, **kwargs) if callable(answer) else answer

        return call

    def names(self):
        return [call[0] for call in self.calls]


def rendered(posting, key, request_hash, tenant, actor):
    entries = [{"wallet_id": leg.wallet_id, "amount": leg.amount, "balance_after": 0} for leg in posting.legs]
    return {"id": 900, "idempotency_key": key, "actor": actor, "entries": entries}, False


def stored(transaction_id):
    wallets = TRANSACTIONS[transaction_id]
    return {
        "id": transaction_id,
        "action": "transfer",
        "asset": "TST",
        "amount": 5,
        "wallet_id": wallets[0],
        "counterparty_wallet_id": wallets[1],
        "usage_id": None,
        "product": None,
        "idempotency_key": "k",
        "actor": {"tenant": "t"},
        "voided_by": None,
        "entries": [
            {"wallet_id": wallets[0], "amount": -5, "balance_after": 1},
            {"wallet_id": wallets[1], "amount": 5, "balance_after": 2},
        ],
    }


class RunOnce:
    """The idempotency protocol reduced to running the action."""

    def run(self, key, request_hash, action, committed, scope=""):
        return action()


@pytest.fixture
def world():
    ledger = Recorder(post=rendered, parent_of=lambda wallet_id: WALLETS[wallet_id].path[-2])
    admin = Recorder(create_wallet=lambda cmd, actor: (30, None), extend_lot=False)
    queries = Recorder(
        get_wallet=lambda wallet_id: {"id": wallet_id},
        get_transaction=stored,
        get_lot=lambda lot_id: {"id": lot_id},
        list_wallets=lambda owner_id: [{"id": w} for w in (1, 10, 11, 20, 404)],
    )
    service = LedgerService(ledger, admin, queries, RunOnce, lambda: None, access=FakeAccess())
    return service, ledger, admin, queries


def refused(error, code=None):
    def check(call):
        with pytest.raises(error) as raised:
            call()
        if code is not None:
            assert raised.value.code == code
        return raised.value

    return check


# create_wallet ------------------------------------------------------------------


def test_a_tree_admin_opens_members_inside_its_tree_only(world):
    service, _, admin, _ = world
    assert service.create_wallet(caller(ACME_ADMIN), member(11))
    assert admin.names() == ["create_wallet"]
    refused(NotFound, "wallet_not_found")(lambda: service.create_wallet(caller(ACME_ADMIN), member(20)))
    refused(NotFound, "wallet_not_found")(lambda: service.create_wallet(caller(RESEARCH_ADMIN), member(10)))
    assert admin.names() == ["create_wallet"]


def test_a_tree_admin_opens_no_root_and_gives_no_credit(world):
    service, _, admin, _ = world
    refused(Forbidden)(
        lambda: service.create_wallet(caller(ACME_ADMIN), commands.CreateWallet(owner_id="o", asset="TST"))
    )
    # the request model already refuses credit on a member; the service's own rule holds without it
    credit = commands.CreateWallet.model_construct(**{**member(11).model_dump(), "credit_limit": 100})
    refused(Forbidden)(lambda: service.create_wallet(caller(ACME_ADMIN), credit))
    assert admin.calls == []
    service.create_wallet(caller(BACK_OFFICE), credit)
    service.create_wallet(caller(BACK_OFFICE), commands.CreateWallet(owner_id="o", asset="TST", credit_limit=100))
    assert admin.names() == ["create_wallet", "create_wallet"]


def test_an_own_grant_opens_its_owners_wallet_and_no_one_elses(world):
    service, _, admin, _ = world
    me = caller(SELF_SERVICE, owner_id="alice")
    service.create_wallet(me, commands.CreateWallet(owner_id="alice", asset="TST"))
    refused(Forbidden)(lambda: service.create_wallet(me, commands.CreateWallet(owner_id="bob", asset="TST")))
    refused(Forbidden)(
        lambda: service.create_wallet(me, commands.CreateWallet(owner_id="alice", asset="TST", credit_limit=1))
    )
    assert admin.names() == ["create_wallet"]


# update_wallet ------------------------------------------------------------------


def test_a_tree_admin_changes_no_credit_limit(world):
    service, _, admin, _ = world
    refused(Forbidden)(lambda: service.update_wallet(caller(ACME_ADMIN), 11, commands.UpdateWallet(credit_limit=5)))
    assert admin.calls == []
    service.update_wallet(caller(BACK_OFFICE), 11, commands.UpdateWallet(credit_limit=5))
    assert admin.names() == ["update_wallet"]


def test_a_tree_admin_changes_its_members_status_not_its_own_roots(world):
    service, _, admin, _ = world
    frozen = commands.UpdateWallet(status="frozen")
    refused(Forbidden)(lambda: service.update_wallet(caller(ACME_ADMIN), 10, frozen))
    refused(Forbidden)(lambda: service.update_wallet(caller(RESEARCH_ADMIN), 11, frozen))
    assert admin.calls == []
    service.update_wallet(caller(ACME_ADMIN), 11, frozen)
    service.update_wallet(caller(RESEARCH_ADMIN), 12, frozen)
    assert [call[1] for call in admin.calls] == [11, 12]
    # its root's spend limits are its to set; anything outside its tree is not found
    service.update_wallet(caller(ACME_ADMIN), 10, commands.UpdateWallet(spend_mode="shared_pool"))
    refused(NotFound, "wallet_not_found")(lambda: service.update_wallet(caller(RESEARCH_ADMIN), 10, frozen))
    assert [call[1] for call in admin.calls] == [11, 12, 10]


# allocate and reclaim: the edge -------------------------------------------------


def test_a_division_admin_moves_money_below_its_root_never_across_the_edge_above_it(world):
    service, ledger, _, _ = world
    division = caller(RESEARCH_ADMIN)
    for action, command in ((service.allocate, commands.Allocate), (service.reclaim, commands.Reclaim)):
        refused(NotFound, "wallet_not_found")(
            lambda action=action, command=command: action(
                division, command(wallet_id=11, asset="TST", amount=1), "k-edge"
            )
        )
    assert ledger.calls == []
    service.allocate(division, commands.Allocate(wallet_id=12, asset="TST", amount=1), "k-below")
    service.allocate(caller(ACME_ADMIN), commands.Allocate(wallet_id=11, asset="TST", amount=1), "k-acme")
    assert [call[1].legs[1].wallet_id for call in ledger.calls if call[0] == "post"] == [12, 11]


# transactions: read when any wallet is inside, void when all are ------------------


def test_a_transaction_is_readable_when_any_of_its_wallets_is(world):
    service, _, _, queries = world
    assert service.get_transaction(caller(ACME_ADMIN), 501)["id"] == 501  # 11 is inside, 20 is not
    assert service.get_transaction(caller(RESEARCH_ADMIN), 500)["id"] == 500
    for who, transaction_id in ((caller(CUSTOMER, owner_id="alice"), 500), (caller(ACME_ADMIN), 404)):
        refused(NotFound, "transaction_not_found")(lambda who=who, t=transaction_id: service.get_transaction(who, t))
    assert [call[1] for call in queries.calls] == [501, 500]


def test_a_bounded_void_needs_every_wallet_inside(world):
    service, ledger, _, queries = world
    voider = caller(ACME_VOIDER)
    refused(NotFound, "transaction_not_found")(lambda: service.void(voider, commands.Void(transaction_id=501), "k-1"))
    assert ledger.calls == [] and queries.calls == []
    service.void(voider, commands.Void(transaction_id=500), "k-2")
    assert ledger.names() == ["post"] and ledger.calls[0][1].voids_transaction_id == 500
    refused(Forbidden)(lambda: service.void(caller(ACME_ADMIN), commands.Void(transaction_id=500), "k-3"))


# lots -------------------------------------------------------------------------------


def test_a_bounded_caller_never_extends_a_lot(world):
    service, _, admin, _ = world
    later = commands.ExtendLot(expires_at=datetime.now(UTC) + timedelta(days=9))
    refused(Forbidden)(lambda: service.extend_lot(caller(ACME_ADMIN), 700, later, "k-1"))  # inside: no scope for it
    refused(NotFound, "lot_not_found")(lambda: service.extend_lot(caller(ACME_ADMIN), 701, later, "k-2"))
    refused(NotFound, "lot_not_found")(lambda: service.extend_lot(caller(ACME_ADMIN), 702, later, "k-3"))
    assert admin.calls == []
    outcome = service.extend_lot(caller(BACK_OFFICE), 701, later, "k-4")
    assert isinstance(outcome, Outcome) and admin.names() == ["extend_lot"]


# listing -------------------------------------------------------------------------


def test_an_owners_wallets_are_listed_as_far_as_the_caller_reads(world):
    service, _, _, _ = world

    def listed(who):
        return [wallet["id"] for wallet in service.list_wallets(who, "anyone")]

    assert listed(caller(CUSTOMER, owner_id="alice")) == [1]
    assert listed(caller(ACME_ADMIN)) == [10, 11]
    assert listed(caller(RESEARCH_ADMIN)) == [11]
    assert listed(caller(BACK_OFFICE)) == [1, 10, 11, 20, 404]
    refused(Forbidden)(lambda: service.list_wallets(caller(METERING), "anyone"))


# answers ----------------------------------------------------------------------------


def test_a_money_answer_hides_what_lies_outside_the_callers_reads(world):
    """The rule itself is tests/unit/test_callers.py's; here, that every answer passes it."""
    service, _, _, _ = world
    budget = caller(
        Grant("budget", frozenset({"allocate"}), "tree", 10), Grant("reader", frozenset({"read"}), "tree", 11)
    )
    answer = service.allocate(budget, commands.Allocate(wallet_id=11, asset="TST", amount=1), "k")
    assert {e["wallet_id"]: e["balance_after"] for e in answer.body["transaction"]["entries"]} == {10: None, 11: 0}
    outsider = caller(ACME_ADMIN, tenant="another")
    seen = service.get_transaction(outsider, 500)
    assert seen["actor"] is None and seen["idempotency_key"] is None
