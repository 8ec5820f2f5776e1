"""Every administrative change leaves an audit row (actor, before, after); credit
limits above the dual-control threshold wait for a second operator."""

import json
import uuid

import pg8000.native
import pytest

from tests.support import http, login_connection, principal, sql


def audit_rows(stack, target):
    rows = sql(
        stack,
        "SELECT action, actor, before, after, reason FROM ledger.audit_log WHERE target = :t ORDER BY id",
        t=target,
    )
    return [dict(zip(("action", "actor", "before", "after", "reason"), row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def operators(stack):
    return principal(stack, "audit-ops", "operator", kind="operator"), principal(
        stack, "audit-ops-2", "operator", kind="operator"
    )


def create_wallet(stack, token, **fields):
    body = {"owner_id": f"audited-{uuid.uuid4().hex[:8]}", "asset": "TST", **fields}
    response = http(stack, "wallets", body, path="/wallets", token=token)
    assert response.status_code == 201, response.text
    return response.json()["wallet"]


def test_wallet_changes_are_audited_with_actor_before_and_after(stack, operators):
    ops, _ = operators
    wallet = create_wallet(stack, ops)
    target = f"wallet:{wallet['id']}"
    frozen = http(stack, "wallets", {"status": "frozen"}, method="PATCH", path=f"/wallets/{wallet['id']}", token=ops)
    assert frozen.status_code == 200
    limits = {"spend_limits": {"day": 500}, "credit_limit": 100}
    assert http(stack, "wallets", limits, method="PATCH", path=f"/wallets/{wallet['id']}", token=ops).ok

    rows = audit_rows(stack, target)
    assert [row["action"] for row in rows] == ["wallet.create", "wallet.update", "wallet.update"]
    assert all(row["actor"]["principal"] == "audit-ops" and row["actor"]["role"] == "operator" for row in rows)
    assert rows[1]["before"]["status"] == "active" and rows[1]["after"]["status"] == "frozen"
    assert rows[2]["before"]["spend_limits"] == {} and rows[2]["after"]["spend_limits"] == {"day": 500}
    assert rows[2]["before"]["credit_limit"] == 0 and rows[2]["after"]["credit_limit"] == 100
    assert rows[2]["actor"]["request_id"]


def test_a_change_that_changes_nothing_writes_no_audit_row(stack, operators):
    ops, _ = operators
    wallet = create_wallet(stack, ops)
    patch = {"status": "active"}
    assert http(stack, "wallets", patch, method="PATCH", path=f"/wallets/{wallet['id']}", token=ops).ok
    assert [row["action"] for row in audit_rows(stack, f"wallet:{wallet['id']}")] == ["wallet.create"]


def test_creating_an_asset_is_audited(stack, operators):
    ops, _ = operators
    code = "AU" + uuid.uuid4().hex[:6].upper()
    response = http(stack, "wallets", {"code": code, "scale": 2}, path="/assets", token=ops)
    assert response.status_code == 201, response.text
    [row] = audit_rows(stack, f"asset:{code}")
    assert row["action"] == "asset.create" and row["actor"]["principal"] == "audit-ops"


def test_a_large_credit_limit_waits_for_a_second_operator(stack, operators):
    ops, _ = operators
    wallet = create_wallet(stack, ops)
    raised = http(
        stack, "wallets", {"credit_limit": 5_000_000}, method="PATCH", path=f"/wallets/{wallet['id']}", token=ops
    )
    assert raised.status_code == 200, raised.text
    body = raised.json()["wallet"]
    assert body["credit_limit"] == 0 and body["pending_change_id"]
    change = body["pending_change_id"]

    def decide(principal_id):
        actor = json.dumps({"principal": principal_id, "role": "operator"})
        return sql(stack, "SELECT ledger.decide_change(:c, true, CAST(:a AS jsonb), 'checked')", c=change, a=actor)

    with pytest.raises(pg8000.native.DatabaseError, match="second_operator_required"):
        decide("audit-ops")
    decide("audit-ops-2")
    assert sql(stack, "SELECT credit_limit FROM ledger.wallets WHERE id = :w", w=wallet["id"]) == [[5_000_000]]
    actions = [row["action"] for row in audit_rows(stack, f"wallet:{wallet['id']}")]
    assert actions == ["wallet.create", "wallet.update"]
    decided = audit_rows(stack, f"change:{change}")
    assert [row["action"] for row in decided] == ["change.request", "change.approve"]
    assert decided[0]["actor"]["principal"] == "audit-ops" and decided[1]["actor"]["principal"] == "audit-ops-2"


def test_a_tree_admin_can_not_give_credit(stack, operators):
    ops, _ = operators
    root = create_wallet(stack, ops, model="enterprise")
    admin = principal(stack, f"tree-admin-{root['id']}", "enterprise_admin", "tree", root["id"], kind="user")
    response = http(stack, "wallets", {"credit_limit": 10}, method="PATCH", path=f"/wallets/{root['id']}", token=admin)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert [row["action"] for row in audit_rows(stack, f"wallet:{root['id']}")] == ["wallet.create"]


def test_the_functions_role_can_not_change_or_delete_audit_rows(stack, operators):
    ops, _ = operators
    create_wallet(stack, ops)
    con = login_connection(stack, "wallet_admin")
    try:
        for statement in (
            "UPDATE ledger.audit_log SET reason = 'rewritten'",
            "DELETE FROM ledger.audit_log",
            "TRUNCATE ledger.audit_log",
            "INSERT INTO ledger.audit_log (actor, action, target) VALUES ('{\"principal\": \"x\"}', 'a.b', 't')",
            "UPDATE ledger.wallets SET credit_limit = 999999999",
        ):
            with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
                con.run(statement)
    finally:
        con.close()
    # and not even the owner rewrites history
    with pytest.raises(pg8000.native.DatabaseError, match="append_only"):
        sql(stack, "UPDATE ledger.audit_log SET reason = 'rewritten'")


def test_credit_is_totalled_per_owner_for_dual_control(stack, operators):
    ops, _ = operators
    first = create_wallet(stack, ops, credit_limit=60_000)
    assert first["credit_limit"] == 60_000 and "pending_change_id" not in first
    # another wallet of the same owner: 60,000 more would make 120,000, past the threshold
    body = {"owner_id": first["owner_id"], "asset": "TST", "credit_limit": 60_000}
    second = http(stack, "wallets", body, path="/wallets", token=ops).json()["wallet"]
    assert second["credit_limit"] == 0 and second["pending_change_id"]


def test_an_approval_of_a_limit_changed_since_is_refused_as_stale(stack, operators):
    ops, ops_2 = operators
    wallet = create_wallet(stack, ops, credit_limit=50_000)
    path = f"/wallets/{wallet['id']}"
    change = http(stack, "wallets", {"credit_limit": 5_000_000}, method="PATCH", path=path, token=ops).json()
    assert change["wallet"]["credit_limit"] == 50_000
    lowered = http(stack, "wallets", {"credit_limit": 10_000}, method="PATCH", path=path, token=ops)
    assert lowered.json()["wallet"]["credit_limit"] == 10_000
    approval = http(stack, "access", {}, path=f"/changes/{change['wallet']['pending_change_id']}/approve", token=ops_2)
    assert approval.status_code == 422 and approval.json()["error"]["code"] == "change_stale"
    assert sql(stack, "SELECT credit_limit FROM ledger.wallets WHERE id = :w", w=wallet["id"]) == [[10_000]]
