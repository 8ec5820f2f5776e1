"""The operators' API end to end (functions/access): tokens from the stack's local
issuer, operator-only routes, principals and grants over HTTP, dual control from the
request to the grantee's first top-up, revocation taking effect, and the command line
(common/access_cli.py) driving the same API."""

import json
import time
import uuid

import pytest
from click.testing import CliRunner

from common.access_cli import main as cli
from tests.support import bearer, http, key, new_wallet, principal, sql

PRINCIPAL_TTL_S = 1.0  # LEDGER_AUTH_PRINCIPAL_TTL_S of the test stack (emulators/stack.py)


@pytest.fixture(scope="module")
def ops(stack):
    return principal(stack, "access-ops", "operator", kind="operator", tenant="ops")


@pytest.fixture(scope="module")
def ops_2(stack):
    return principal(stack, "access-ops-2", "operator", kind="operator", tenant="ops")


def api(stack, token, method, path, body=None):
    return http(stack, "access", body, method=method, path=path, token=token)


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def refused(response, status, code):
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text


def new_id(prefix="e2e"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def register(stack, token, kind="service", **extra):
    """A principal created through the API, trusted from the stack's issuer; its id."""
    principal_id = new_id()
    body = {"id": principal_id, "issuer": stack.issuer, "kind": kind, "tenant": principal_id, **extra}
    ok(api(stack, token, "POST", "/principals", body), 201)
    return principal_id


def eventually(call, status, within_s=5 * PRINCIPAL_TTL_S + 5):
    """The response once it has `status`: grants are cached per instance for the TTL."""
    deadline = time.monotonic() + within_s
    while True:
        response = call()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_only_an_operator_reaches_the_api(stack, ops):
    customer = principal(stack, "access-alice", "customer", boundary="own", owner_id="access-alice", kind="user")
    payments = principal(stack, "access-payments", "payment_service")
    before = sql(stack, "SELECT count(*) FROM ledger.principals")[0][0]
    anonymous = api(stack, "", "GET", "/principals")
    refused(anonymous, 401, "unauthenticated")
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer ")
    for token in (customer, payments):
        refused(api(stack, token, "GET", "/principals"), 403, "forbidden")
        refused(api(stack, token, "GET", "/audit"), 403, "forbidden")
        body = {"id": new_id(), "issuer": stack.issuer, "kind": "operator", "tenant": "x"}
        refused(api(stack, token, "POST", "/principals", body), 403, "forbidden")
        refused(
            api(stack, token, "POST", "/principals/access-alice/grants", {"role": "operator", "boundary": "all"}),
            403,
            "forbidden",
        )
    assert sql(stack, "SELECT count(*) FROM ledger.principals")[0][0] == before
    ok(api(stack, ops, "GET", "/principals"))


def test_principals_over_http(stack, ops, ops_2):
    principal_id = register(stack, ops, kind="user", owner_id="someone", description="an app user")
    refused(
        api(
            stack,
            ops,
            "POST",
            "/principals",
            {"id": principal_id, "issuer": stack.issuer, "kind": "user", "tenant": "t"},
        ),
        422,
        "principal_exists",
    )
    shown = ok(api(stack, ops, "GET", f"/principals/{principal_id}"))["principal"]
    assert (shown["kind"], shown["owner_id"], shown["subject"], shown["grants"]) == (
        "user",
        "someone",
        principal_id,
        [],
    )
    limits = {"money": {"per_second": 1, "burst": 2}}
    changed = ok(
        api(stack, ops_2, "PATCH", f"/principals/{principal_id}", {"rate_limits": limits, "reason": "a noisy app"})
    )["principal"]
    assert changed["rate_limits"] == {"money": {"per_second": 1.0, "burst": 2}}
    refused(
        api(stack, ops, "PATCH", f"/principals/{principal_id}", {"rate_limits": {"money": {"burst": -1}}}),
        400,
        "validation_failed",
    )
    refused(api(stack, ops, "GET", "/principals/e2e-nobody"), 404, "principal_not_found")
    refused(api(stack, ops, "GET", "/principals/not%20a%20name"), 400, "invalid_id")

    page = ok(api(stack, ops, "GET", f"/principals?after={principal_id[:-1]}&limit=500"))
    assert principal_id in [p["id"] for p in page["principals"]]
    trail = ok(api(stack, ops, "GET", f"/audit?target=principal:{principal_id}"))
    assert [(row["action"], row["actor"]["principal"]) for row in trail["audit"]] == [
        ("principal.create", "access-ops"),
        ("principal.update", "access-ops-2"),
    ]
    assert trail["audit"][1]["before"]["rate_limits"] is None and trail["audit"][1]["reason"] == "a noisy app"


def topup(stack, token, wallet):
    body = {"wallet_id": wallet, "asset": "TST", "amount": 500, "external_ref": key("psp")}
    return http(stack, "topup", body, key("topup"), token=token)


def test_dual_control_from_the_request_to_the_grantees_first_top_up(stack, ops, ops_2):
    wallet = new_wallet(stack)
    grantee = register(stack, ops)
    token = bearer(stack, grantee)
    refused(topup(stack, token, wallet), 403, "forbidden")

    grant = ok(
        api(
            stack,
            ops,
            "POST",
            f"/principals/{grantee}/grants",
            {"role": "payment_service", "boundary": "all", "reason": "new PSP"},
        ),
        201,
    )["grant"]
    assert grant["status"] == "pending" and grant["pending_change_id"]
    change_id = grant["pending_change_id"]
    pending = ok(api(stack, ops_2, "GET", "/changes?status=pending&limit=500"))["changes"]
    assert any(c["id"] == change_id and c["change"]["grant_id"] == grant["id"] for c in pending)

    time.sleep(PRINCIPAL_TTL_S + 0.2)  # past any cached view of the grantee: pending is still nothing
    refused(topup(stack, token, wallet), 403, "forbidden")
    refused(api(stack, ops, "POST", f"/changes/{change_id}/approve", {}), 403, "second_operator_required")
    refused(api(stack, token, "POST", f"/changes/{change_id}/approve"), 403, "forbidden")  # nor the grantee
    refused(topup(stack, token, wallet), 403, "forbidden")

    decided = ok(api(stack, ops_2, "POST", f"/changes/{change_id}/approve", {"reason": "contract signed"}))["change"]
    assert (decided["status"], decided["decided_by"]["principal"]) == ("approved", "access-ops-2")
    posted = eventually(lambda: topup(stack, token, wallet), 201)
    assert posted.status_code == 201, posted.text
    assert posted.json()["transaction"]["amount"] == 500
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=wallet)[0][0] == 500
    refused(api(stack, ops_2, "POST", f"/changes/{change_id}/reject"), 422, "change_decided")

    trail = ok(api(stack, ops, "GET", f"/audit?target=principal:{grantee}"))["audit"]
    assert [(r["action"], r["actor"]["principal"]) for r in trail] == [
        ("principal.create", "access-ops"),
        ("grant.create", "access-ops"),
        ("grant.activate", "access-ops-2"),
    ]
    decision = ok(api(stack, ops, "GET", f"/audit?target=change:{change_id}"))["audit"]
    assert [(r["action"], r["actor"]["principal"], r["reason"]) for r in decision] == [
        ("change.request", "access-ops", "new PSP"),
        ("change.approve", "access-ops-2", "contract signed"),
    ]


def test_a_revoked_grant_and_a_disabled_principal_stop_working(stack, ops, ops_2):
    owner_id = new_id("owner")
    wallet = new_wallet(stack, owner_id=owner_id)
    user = register(stack, ops, kind="user", owner_id=owner_id)
    token = bearer(stack, user)
    grant = ok(api(stack, ops, "POST", f"/principals/{user}/grants", {"role": "customer", "boundary": "own"}), 201)[
        "grant"
    ]
    assert grant["status"] == "active" and "pending_change_id" not in grant  # no dual control for an end user's own
    read = lambda: http(stack, "wallets", method="GET", path=f"/wallets/{wallet}", token=token)  # noqa: E731
    assert eventually(read, 200).status_code == 200

    revoked = ok(api(stack, ops_2, "POST", f"/grants/{grant['id']}/revoke", {"reason": "closed the account"}))["grant"]
    assert revoked["status"] == "revoked"
    refused(eventually(read, 403), 403, "forbidden")
    refused(api(stack, ops, "POST", f"/grants/{grant['id']}/revoke"), 422, "grant_revoked")

    ok(api(stack, ops, "POST", f"/principals/{user}/grants", {"role": "customer", "boundary": "own"}), 201)
    assert eventually(read, 200).status_code == 200
    ok(api(stack, ops, "PATCH", f"/principals/{user}", {"status": "disabled"}))
    refused(eventually(read, 403), 403, "forbidden")


def test_roles_and_their_rate_limits(stack, ops):
    roles = {role["name"]: role for role in ok(api(stack, ops, "GET", "/roles"))["roles"]}
    assert roles["operator"]["dual_control"] and roles["payment_service"]["dual_control"]
    assert not roles["customer"]["dual_control"] and roles["customer"]["scopes"] == ["read", "transfer"]
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    sql(stack, "INSERT INTO ledger.roles (name, scopes) VALUES (:n, ARRAY['read'])", n=name)
    limits = {"read": {"per_second": 5, "burst": 10}, "admin": {"burst": 1}}
    role = ok(api(stack, ops, "PATCH", f"/roles/{name}", {"rate_limits": limits, "reason": "a busy dashboard"}))["role"]
    assert role["rate_limits"] == {"read": {"per_second": 5.0, "burst": 10}, "admin": {"burst": 1}}
    (row,) = ok(api(stack, ops, "GET", f"/audit?target=role:{name}"))["audit"]
    assert (row["action"], row["before"], row["reason"]) == ("role.update", {"rate_limits": {}}, "a busy dashboard")
    refused(api(stack, ops, "PATCH", "/roles/no_such_role", {"rate_limits": limits}), 404, "role_not_found")


# The command line ----------------------------------------------------------------


def run(stack, token, *args):
    result = CliRunner().invoke(cli, ["--url", stack.function_url("access"), "--token", token, *args])
    return result.exit_code, result.output


def test_the_command_line_drives_the_same_api(stack, ops, ops_2):
    principal_id = new_id("cli")
    code, out = run(
        stack,
        ops,
        "principal",
        "add",
        principal_id,
        "--kind",
        "service",
        "--issuer",
        stack.issuer,
        "--reason",
        "metering v2",
    )
    assert code == 0, out
    assert json.loads(out)["principal"]["id"] == principal_id
    code, out = run(stack, ops, "grant", "add", principal_id, "metering_service", "--boundary", "all")
    assert code == 0, out
    grant = json.loads(out)["grant"]
    assert grant["status"] == "pending"
    code, out = run(stack, ops, "change", "approve", str(grant["pending_change_id"]))
    assert code == 1 and "403 second_operator_required" in out
    code, out = run(stack, ops_2, "change", "approve", str(grant["pending_change_id"]), "--reason", "ok")
    assert code == 0 and json.loads(out)["change"]["status"] == "approved", out
    code, out = run(stack, ops, "principal", "show", principal_id)
    assert code == 0 and [g["status"] for g in json.loads(out)["principal"]["grants"]] == ["active"], out
    code, out = run(stack, ops, "principal", "limits", principal_id, '{"money": {"burst": 3}}')
    assert code == 0 and json.loads(out)["principal"]["rate_limits"] == {"money": {"burst": 3}}, out
    code, out = run(stack, ops, "principal", "disable", principal_id, "--reason", "retired")
    assert code == 0 and json.loads(out)["principal"]["status"] == "disabled", out
    code, out = run(stack, ops, "audit", "--target", f"principal:{principal_id}")
    actions = [row["action"] for row in json.loads(out)["audit"]]
    assert actions == ["principal.create", "grant.create", "grant.activate", "principal.update", "principal.update"]

    code, out = run(stack, ops, "principal", "show", "cli-nobody")
    assert code == 1 and "404 principal_not_found" in out
    customer = principal(stack, "access-alice", "customer", boundary="own", owner_id="access-alice", kind="user")
    code, out = run(stack, customer, "principal", "list")
    assert code == 1 and "403 forbidden" in out
    code, out = run(stack, "", "principal", "list")
    assert code == 1 and "LEDGER_TOKEN" in out
