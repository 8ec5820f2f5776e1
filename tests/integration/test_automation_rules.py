"""Automation rules managed through the service, as the wallets function's database role,
against real Postgres: each change one audited procedure call, a rule seen and changed
only within its creator's tenant and the caller's boundary, each kind's scope, refusals
that write nothing, and a paused rule resumed armed again."""

import pytest
from pg8000.exceptions import DatabaseError

from common import bootstrap
from common.auth.callers import SCOPES, Caller, Grant, Principal
from common.errors import Forbidden, NotFound, Refused
from common.ledger import commands
from tests.support import CALLER, key, login_connection, new_wallet, sql, system_account

OTHER_TENANT = Caller(
    Principal("tests-o", "tests", "tests-o", "service", "tests-o", grants=(Grant("t", frozenset(SCOPES), "all"),)),
    request_id="tests-o",
)


def bounded(owner_id, *scopes, boundary="own", root=None, tenant="tests"):
    """A caller of the tests' tenant holding `scopes` over its own wallets or a tree."""
    grant = Grant("g", frozenset(scopes), boundary, root)
    return Caller(Principal(key("p"), "tests", key("s"), "user", tenant, owner_id, (grant,)), request_id=key("r"))


@pytest.fixture
def service(stack):
    return bootstrap.service()


def rule(service, wallet_id, caller=CALLER, **fields):
    return service.create_rule(caller, wallet_id, commands.CreateRule(**fields))


def audit(stack, rule_id):
    return sql(
        stack,
        "SELECT action, actor->>'tenant', before->>'status', after->>'status', (after->>'armed')::boolean"
        " FROM ledger.audit_log WHERE target = :t ORDER BY id",
        t=f"rule:{rule_id}",
    )


def counts(stack):
    return sql(
        stack,
        "SELECT (SELECT count(*) FROM ledger.automation_rules),"
        " (SELECT count(*) FROM ledger.audit_log WHERE action LIKE 'rule.%')",
    )[0]


def tree(service, members=2):
    pool = service.create_wallet(CALLER, commands.CreateWallet(owner_id=key("acme"), asset="TST", model="enterprise"))
    children = [
        service.create_wallet(
            CALLER,
            commands.CreateWallet(owner_id=key("team"), asset="TST", model="enterprise", parent_id=pool["id"]),
        )["id"]
        for _ in range(members)
    ]
    return pool["id"], children


def test_each_kind_is_created_audited_listed_and_read_in_its_tenant(stack, service):
    wallet = new_wallet(stack)
    pool, members = tree(service)
    topup = rule(service, wallet, kind="auto_topup", threshold=1000, amount=5000, funding_ref="pm_1", metadata={"a": 1})
    low = rule(service, wallet, kind="low_balance", threshold=0)
    allocation = rule(service, pool, kind="recurring_allocation", amount=300, period="week", member_ids=members[:1])
    every_child = rule(service, pool, kind="recurring_allocation", amount=100, period="hour")

    assert topup["asset"] == "TST" and topup["tenant"] == "tests" and topup["metadata"] == {"a": 1}
    assert (topup["status"], topup["armed"], topup["created_by"]["principal"]) == ("active", True, "tests")
    assert (low["threshold"], low["amount"], low["funding_ref"]) == (0, None, None)
    assert allocation["member_ids"] == members[:1] and every_child["member_ids"] is None
    assert audit(stack, topup["id"]) == [["rule.create", "tests", None, "active", True]]
    assert [r["id"] for r in service.list_rules(CALLER, wallet)] == [topup["id"], low["id"]]
    assert [r["id"] for r in service.list_rules(CALLER, pool)] == [allocation["id"], every_child["id"]]
    assert service.get_rule(CALLER, allocation["id"]) == allocation


def test_a_paused_rule_resumed_is_armed_again_and_a_deleted_one_is_kept_but_final(stack, service):
    wallet = new_wallet(stack)
    created = rule(service, wallet, kind="auto_topup", threshold=100, amount=500, funding_ref="pm_2")
    # as the engine leaves it after a firing (or a declined charge)
    sql(stack, "UPDATE ledger.automation_rules SET armed = false WHERE id = :id", id=created["id"])

    paused = service.pause_rule(CALLER, created["id"])
    assert (paused["status"], paused["armed"]) == ("paused", False)
    assert service.pause_rule(CALLER, created["id"]) == paused  # again: nothing changes, nothing audited
    resumed = service.resume_rule(CALLER, created["id"])
    assert (resumed["status"], resumed["armed"]) == ("active", True)
    deleted = service.delete_rule(CALLER, created["id"])
    assert deleted["status"] == "deleted"
    assert service.delete_rule(CALLER, created["id"]) == deleted
    assert service.list_rules(CALLER, wallet) == []
    assert service.get_rule(CALLER, created["id"])["status"] == "deleted"  # kept for the record
    with pytest.raises(Refused) as error:
        service.resume_rule(CALLER, created["id"])
    assert error.value.code == "rule_deleted"
    assert audit(stack, created["id"]) == [
        ["rule.create", "tests", None, "active", True],
        ["rule.pause", "tests", "active", "paused", False],
        ["rule.resume", "tests", "paused", "active", True],
        ["rule.delete", "tests", "active", "deleted", True],
    ]


def test_an_active_rule_that_fired_is_armed_again_by_resume(stack, service):
    created = rule(service, new_wallet(stack), kind="low_balance", threshold=10)
    sql(stack, "UPDATE ledger.automation_rules SET armed = false WHERE id = :id", id=created["id"])
    assert service.resume_rule(CALLER, created["id"])["armed"] is True


def test_another_tenants_rule_is_not_found_whatever_the_callers_scopes(stack, service):
    wallet = new_wallet(stack)
    created = rule(service, wallet, kind="low_balance", threshold=10)
    for call in (service.get_rule, service.pause_rule, service.resume_rule, service.delete_rule):
        with pytest.raises(NotFound) as error:
            call(OTHER_TENANT, created["id"])
        assert error.value.code == "rule_not_found"
    assert service.list_rules(OTHER_TENANT, wallet) == []
    with pytest.raises(NotFound):  # no rule at all answers alike
        service.get_rule(OTHER_TENANT, 2**62)
    assert service.get_rule(CALLER, created["id"])["status"] == "active"


def test_the_procedures_check_the_tenant_themselves(stack, service):
    """Going around the service: the wallets function's own role can't change another
    tenant's rule either."""
    created = rule(service, new_wallet(stack), kind="low_balance", threshold=10)
    con = login_connection(stack, "wallet_admin")
    try:
        with pytest.raises(DatabaseError) as error:
            con.run("SELECT ledger.change_rule(:id, 'tests-o', 'delete', '{\"principal\": \"x\"}')", id=created["id"])
        assert error.value.args[0]["M"] == "rule_not_found"
        with pytest.raises(DatabaseError):
            con.run("UPDATE ledger.automation_rules SET status = 'deleted' WHERE id = :id", id=created["id"])
    finally:
        con.close()
    assert service.get_rule(CALLER, created["id"])["status"] == "active"


def test_a_rule_on_a_wallet_outside_the_boundary_is_not_found(stack, service):
    alice, bob = key("alice"), key("bob")
    alices, bobs = new_wallet(stack, owner_id=alice), new_wallet(stack, owner_id=bob)
    on_bob = rule(service, bobs, kind="low_balance", threshold=10)
    customer = bounded(alice, "read", "wallet_admin")
    with pytest.raises(NotFound) as error:
        service.create_rule(customer, bobs, commands.CreateRule(kind="low_balance", threshold=1))
    assert error.value.code == "wallet_not_found"
    for call in (service.get_rule, service.pause_rule, service.delete_rule):
        with pytest.raises(NotFound) as error:
            call(customer, on_bob["id"])
        assert error.value.code == "rule_not_found"
    with pytest.raises(NotFound):
        service.list_rules(customer, bobs)
    own = rule(service, alices, customer, kind="low_balance", threshold=1)
    assert service.pause_rule(customer, own["id"])["status"] == "paused"
    assert audit(stack, own["id"])[0][:2] == ["rule.create", "tests"]


def test_each_kind_needs_its_scope_to_be_created_and_changed(stack, service):
    owner_id = key("alice")
    wallet = new_wallet(stack, owner_id=owner_id)
    payments = bounded(owner_id, "read", "topup")
    reader = bounded(owner_id, "read")
    topup = rule(service, wallet, payments, kind="auto_topup", threshold=1, amount=2, funding_ref="pm_3")
    with pytest.raises(Forbidden):
        rule(service, wallet, payments, kind="low_balance", threshold=1)
    low = rule(service, wallet, kind="low_balance", threshold=1)
    with pytest.raises(Forbidden):
        service.pause_rule(payments, low["id"])
    for call in (service.pause_rule, service.resume_rule, service.delete_rule):
        with pytest.raises(Forbidden):
            call(reader, topup["id"])
    assert service.get_rule(reader, topup["id"])["status"] == "active"
    assert service.delete_rule(payments, topup["id"])["status"] == "deleted"
    with pytest.raises(Forbidden):  # no read at all: refused whatever the id
        service.get_rule(bounded(owner_id, "topup"), topup["id"])


def test_a_recurring_allocation_needs_allocate_on_the_pool_and_each_listed_member(stack, service):
    pool, members = tree(service)
    division_admin = bounded(None, "read", "allocate", boundary="tree", root=members[0])
    with pytest.raises(NotFound) as error:  # the pool is above the admin's tree
        rule(service, pool, division_admin, kind="recurring_allocation", amount=1, period="day", member_ids=members[:1])
    assert error.value.code == "wallet_not_found"
    tree_admin = bounded(None, "read", "allocate", boundary="tree", root=pool)
    created = rule(service, pool, tree_admin, kind="recurring_allocation", amount=1, period="day", member_ids=members)
    assert service.pause_rule(tree_admin, created["id"])["status"] == "paused"
    with pytest.raises(NotFound) as error:
        service.resume_rule(division_admin, created["id"])
    assert error.value.code == "rule_not_found"


def test_refused_rules_write_nothing(stack, service):
    pool, members = tree(service)
    stranger = new_wallet(stack)
    closed = new_wallet(stack)
    service.update_wallet(CALLER, closed, commands.UpdateWallet(status="closed"))
    before = counts(stack)
    refusals = {
        "system_account": (system_account(stack, "TST", "funding"), {"kind": "low_balance", "threshold": 1}),
        "wallet_closed": (closed, {"kind": "low_balance", "threshold": 1}),
        "wallet_not_found": (2**62, {"kind": "low_balance", "threshold": 1}),
        "not_a_pool": (stranger, {"kind": "recurring_allocation", "amount": 1, "period": "day"}),
        "member_not_in_pool": (
            pool,
            {"kind": "recurring_allocation", "amount": 1, "period": "day", "member_ids": [members[0], stranger]},
        ),
    }
    for code, (wallet_id, fields) in refusals.items():
        with pytest.raises((Refused, NotFound)) as error:
            rule(service, wallet_id, **fields)
        assert error.value.code == code
    assert counts(stack) == before
