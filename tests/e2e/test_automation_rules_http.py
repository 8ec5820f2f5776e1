"""Automation rules over HTTP through the wallets function: a payment service registers
a customer's auto top-up, the customer reads it, another tenant can't find it, and
pause, resume and delete answer the rule as it is then. The audit row of each change
names the caller who made it."""

from tests.support import http, key, new_wallet, principal, sql


def test_a_rule_managed_over_http_within_its_tenant(stack):
    customer = key("alice")
    wallet = new_wallet(stack, owner_id=customer)
    tenant = key("shop")
    payments = principal(stack, key("payments"), "payment_service", tenant=tenant)
    alice = principal(stack, key("alice"), "customer", "own", tenant=tenant, owner_id=customer, kind="user")
    stranger = principal(stack, key("other"), "payment_service", tenant=key("other-shop"))

    def call(method, path, token, body=None):
        return http(stack, "wallets", body, method=method, path=path, token=token)

    body = {"kind": "auto_topup", "threshold": 1000, "amount": 5000, "funding_ref": "pm_card_1"}
    created = call("POST", f"/wallets/{wallet}/rules", payments, body)
    assert created.status_code == 201, created.text
    rule = created.json()["rule"]
    assert (rule["kind"], rule["status"], rule["armed"], rule["tenant"]) == ("auto_topup", "active", True, tenant)

    listed = call("GET", f"/wallets/{wallet}/rules", alice)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["rules"]] == [rule["id"]]
    # alice may read her wallet's rules, not change the payment service's auto top-up
    assert call("POST", f"/rules/{rule['id']}/pause", alice).json()["error"]["code"] == "forbidden"
    for method, path in (("GET", ""), ("POST", "/pause"), ("DELETE", "")):
        hidden = call(method, f"/wallets/rules/{rule['id']}{path}", stranger)
        assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "rule_not_found")

    assert call("POST", f"/rules/{rule['id']}/pause", payments).json()["rule"]["status"] == "paused"
    resumed = call("POST", f"/rules/{rule['id']}/resume", payments).json()["rule"]
    assert (resumed["status"], resumed["armed"]) == ("active", True)
    assert call("DELETE", f"/rules/{rule['id']}", payments).json()["rule"]["status"] == "deleted"
    assert call("GET", f"/wallets/{wallet}/rules", alice).json()["rules"] == []

    bad = call("POST", f"/wallets/{wallet}/rules", payments, {"kind": "auto_topup", "threshold": 1000})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_failed")
    audited = sql(
        stack,
        "SELECT action, actor->>'tenant' FROM ledger.audit_log WHERE target = :t ORDER BY id",
        t=f"rule:{rule['id']}",
    )
    assert audited == [[f"rule.{change}", tenant] for change in ("create", "pause", "resume", "delete")]
