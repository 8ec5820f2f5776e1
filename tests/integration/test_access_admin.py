"""Principals, grants and roles change only through the audited procedures
(db/schema/75_access.sql), driven here through the service as the functions' database
role: each change's audit row with before and after, a grant that needs a second
operator not effective until another one approves, revocation, and the functions'
role unable to go around them."""

import uuid

import pytest
from pg8000.exceptions import DatabaseError

from common import bootstrap
from common.access_service import AccessService
from common.auth import commands
from common.auth.callers import Caller, Grant, Principal
from common.errors import Forbidden, NotFound, Refused
from common.ledger.commands import UpdateWallet
from emulators.logins import LOGINS
from tests.support import access_pool, login_connection, new_wallet, owner, sql

ISSUER = "https://issuer.example"
OPERATOR = Grant(
    "operator", frozenset({"read", "void", "allocate", "wallet_admin", "asset_admin", "grants_admin"}), "all"
)


def operator(name):
    return Caller(Principal(name, ISSUER, name, "operator", "ops", None, (OPERATOR,)), f"req-{name}")


OPS, OPS_2 = operator("it-ops"), operator("it-ops-2")


@pytest.fixture(scope="module")
def access(stack):
    """The service as the access function runs it: as its own database role."""
    from common.adapters.access_admin import AccessAdmin

    return AccessService(AccessAdmin(access_pool(stack)))


def new_id(prefix="it"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_principal(access, kind="service", owner_id=None):
    principal_id = new_id()
    cmd = commands.CreatePrincipal(id=principal_id, issuer=ISSUER, kind=kind, tenant=principal_id, owner_id=owner_id)
    access.create_principal(OPS, cmd)
    return principal_id


def audit(stack, target):
    return [
        dict(zip(("action", "actor", "before", "after", "reason"), row, strict=True))
        for row in sql(
            stack,
            "SELECT action, actor, before, after, reason FROM ledger.audit_log WHERE target = :t ORDER BY id",
            t=target,
        )
    ]


def effective_scopes(principal_id):
    """What authentication would see for the principal's token now (ledger.caller())."""
    found = bootstrap.access_store().principal(ISSUER, principal_id)
    return None if found is None else sorted(scope for grant in found.grants for scope in grant.scopes)


def test_a_principal_created_and_changed_leaves_audit_rows_with_before_and_after(stack, access):
    principal_id = new_id()
    cmd = commands.CreatePrincipal(
        id=principal_id, issuer=ISSUER, kind="user", tenant="t1", owner_id="o1", reason="onboarding"
    )
    created = access.create_principal(OPS, cmd)
    assert (created["id"], created["subject"], created["status"], created["grants"]) == (
        principal_id,
        principal_id,
        "active",
        [],
    )
    limits = commands.RateLimits.model_validate({"money": {"per_second": 2, "burst": 4}})
    access.update_principal(
        OPS_2, principal_id, commands.UpdatePrincipal(status="disabled", rate_limits=limits, reason="abuse")
    )
    cleared = access.update_principal(OPS, principal_id, commands.UpdatePrincipal.model_validate({"rate_limits": None}))
    assert cleared["rate_limits"] is None and cleared["status"] == "disabled"

    create, disable, clear = audit(stack, f"principal:{principal_id}")
    assert create["action"] == "principal.create" and create["before"] is None and create["reason"] == "onboarding"
    assert create["after"]["owner_id"] == "o1" and create["after"]["status"] == "active"
    assert create["actor"] == {
        "principal": "it-ops",
        "issuer": ISSUER,
        "role": "operator",
        "tenant": "ops",
        "request_id": "req-it-ops",
    }
    assert (disable["before"]["status"], disable["after"]["status"]) == ("active", "disabled")
    assert (disable["before"]["rate_limits"], disable["after"]["rate_limits"]) == (
        None,
        {"money": {"per_second": 2.0, "burst": 4}},
    )
    assert disable["actor"]["principal"] == "it-ops-2" and disable["reason"] == "abuse"
    assert (clear["before"]["rate_limits"], clear["after"]["rate_limits"]) == (
        {"money": {"per_second": 2.0, "burst": 4}},
        None,
    )
    assert effective_scopes(principal_id) is None  # disabled: no caller


def test_a_change_that_changes_nothing_writes_no_audit_row(stack, access):
    principal_id = new_principal(access)
    access.update_principal(OPS, principal_id, commands.UpdatePrincipal(status="active"))
    assert [row["action"] for row in audit(stack, f"principal:{principal_id}")] == ["principal.create"]


def test_a_grant_that_needs_a_second_operator_is_not_effective_until_another_approves(stack, access):
    grantee = new_principal(access)
    grant = access.grant_role(OPS, grantee, commands.GrantRole(role="payment_service", boundary="all", reason="psp"))
    assert grant["status"] == "pending" and grant["scopes"] == ["topup", "read"]
    change_id = grant["pending_change_id"]
    assert effective_scopes(grantee) == []  # registered, but holds nothing yet

    with pytest.raises(Forbidden) as refused:
        access.decide_change(OPS, change_id, True, commands.Decide())  # the requester
    assert refused.value.code == "second_operator_required"
    assert effective_scopes(grantee) == []

    decided = access.decide_change(OPS_2, change_id, True, commands.Decide(reason="checked the contract"))
    assert decided["status"] == "approved" and decided["decided_by"]["principal"] == "it-ops-2"
    assert decided["requested_by"]["principal"] == "it-ops"
    assert effective_scopes(grantee) == ["read", "topup"]
    with pytest.raises(Refused) as again:
        access.decide_change(OPS_2, change_id, False, commands.Decide())
    assert again.value.code == "change_decided"

    actions = [(row["action"], row["actor"]["principal"]) for row in audit(stack, f"principal:{grantee}")]
    assert actions == [("principal.create", "it-ops"), ("grant.create", "it-ops"), ("grant.activate", "it-ops-2")]
    request, approve = audit(stack, f"change:{change_id}")
    assert (request["action"], request["after"]["change"]["role"], request["reason"]) == (
        "change.request",
        "payment_service",
        "psp",
    )
    assert (approve["action"], approve["actor"]["principal"]) == ("change.approve", "it-ops-2")


def test_a_rejected_grant_is_revoked_and_never_effective(access):
    grantee = new_principal(access)
    grant = access.grant_role(OPS, grantee, commands.GrantRole(role="back_office", boundary="all"))
    access.decide_change(OPS_2, grant["pending_change_id"], False, commands.Decide(reason="no"))
    assert access.get_principal(OPS, grantee)["grants"][0]["status"] == "revoked"
    assert effective_scopes(grantee) == []


def test_a_grant_without_dual_control_is_effective_at_once_and_revocable(stack, access):
    wallet = new_wallet(stack)
    grantee = new_principal(access, kind="user", owner_id="someone")
    own = access.grant_role(OPS, grantee, commands.GrantRole(role="customer", boundary="own"))
    tree = access.grant_role(OPS, grantee, commands.GrantRole(role="reseller", boundary="tree", root_wallet_id=wallet))
    assert (own["status"], tree["status"], tree["root_wallet_id"]) == ("active", "active", wallet)
    assert "pending_change_id" not in own and "pending_change_id" not in tree
    assert effective_scopes(grantee) == sorted(["read", "transfer", "read", "allocate", "wallet_admin"])

    revoked = access.revoke_grant(OPS_2, own["id"], commands.Decide(reason="moved away"))
    assert revoked["status"] == "revoked"
    assert effective_scopes(grantee) == ["allocate", "read", "wallet_admin"]
    last = audit(stack, f"principal:{grantee}")[-1]
    assert (last["action"], last["before"]["status"], last["after"]["status"], last["reason"]) == (
        "grant.revoke",
        "active",
        "revoked",
        "moved away",
    )
    with pytest.raises(Refused) as again:
        access.revoke_grant(OPS, own["id"], commands.Decide())
    assert again.value.code == "grant_revoked"
    # revoked, the same grant may be given again
    assert access.grant_role(OPS, grantee, commands.GrantRole(role="customer", boundary="own"))["status"] == "active"


def test_a_pending_grant_is_rejected_through_its_change_not_revoked(access):
    grantee = new_principal(access)
    grant = access.grant_role(OPS, grantee, commands.GrantRole(role="metering_service", boundary="all"))
    with pytest.raises(Refused) as refused:
        access.revoke_grant(OPS_2, grant["id"], commands.Decide())
    assert refused.value.code == "grant_pending" and refused.value.details["change_id"] == grant["pending_change_id"]


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        (commands.GrantRole(role="customer", boundary="own"), "principal_without_owner"),
        (commands.GrantRole(role="reseller", boundary="tree", root_wallet_id=2**62), "root_wallet_not_found"),
        (commands.GrantRole(role="wizard", boundary="all"), "unknown_role"),
    ],
)
def test_a_grant_that_could_cover_nothing_is_refused(access, cmd, code):
    with pytest.raises(Refused) as refused:
        access.grant_role(OPS, new_principal(access), cmd)
    assert refused.value.code == code


def test_the_same_live_grant_twice_and_the_same_principal_twice_are_refused(access):
    grantee = new_principal(access)
    first = access.grant_role(OPS, grantee, commands.GrantRole(role="metering_service", boundary="all"))
    with pytest.raises(Refused) as twice:  # pending counts as live
        access.grant_role(OPS, grantee, commands.GrantRole(role="metering_service", boundary="all"))
    assert twice.value.code == "grant_exists" and twice.value.details["grant_id"] == first["id"]
    for cmd in (
        commands.CreatePrincipal(id=grantee, issuer=ISSUER, kind="service", tenant="x", subject="other"),
        commands.CreatePrincipal(id=new_id(), issuer=ISSUER, kind="service", tenant="x", subject=grantee),
    ):
        with pytest.raises(Refused) as taken:
            access.create_principal(OPS, cmd)
        assert taken.value.code == "principal_exists" and taken.value.details["existing"] == grantee


def test_changes_to_what_does_not_exist_are_404s(access):
    for use_case, code in (
        (
            lambda: access.update_principal(OPS, "it-nobody", commands.UpdatePrincipal(status="disabled")),
            "principal_not_found",
        ),
        (
            lambda: access.grant_role(OPS, "it-nobody", commands.GrantRole(role="customer", boundary="all")),
            "principal_not_found",
        ),
        (lambda: access.revoke_grant(OPS, 2**62, commands.Decide()), "grant_not_found"),
        (
            lambda: access.set_role_rate_limits(
                OPS, "it_nobody", commands.RoleLimits(rate_limits=commands.RateLimits())
            ),
            "role_not_found",
        ),
        (lambda: access.decide_change(OPS, 2**62, True, commands.Decide()), "change_not_found"),
    ):
        with pytest.raises(NotFound) as missing:
            use_case()
        assert missing.value.code == code


def test_a_roles_rate_limits_are_audited(stack, access):
    role = f"it_{uuid.uuid4().hex[:12]}"
    sql(stack, "INSERT INTO ledger.roles (name, scopes) VALUES (:n, ARRAY['read'])", n=role)
    limits = commands.RateLimits.model_validate({"read": {"per_second": 10, "burst": 20}})
    updated = access.set_role_rate_limits(OPS, role, commands.RoleLimits(rate_limits=limits, reason="noisy"))
    assert updated["rate_limits"] == {"read": {"per_second": 10.0, "burst": 20}}
    (row,) = audit(stack, f"role:{role}")
    assert (row["action"], row["before"], row["after"], row["reason"]) == (
        "role.update",
        {"rate_limits": {}},
        {"rate_limits": {"read": {"per_second": 10.0, "burst": 20}}},
        "noisy",
    )
    page = access.audit(OPS, commands.AuditQuery(target=f"role:{role}"))
    assert [r["action"] for r in page["audit"]] == ["role.update"] and page["next"] is None


def test_a_credit_limit_change_is_decided_by_another_wallet_admin(stack, access):
    wallet = new_wallet(stack)
    above = sql(stack, "SELECT dual_control_credit_limit FROM ledger.access_settings")[0][0] + 1
    pending = bootstrap.ledger_admin().update_wallet(wallet, UpdateWallet(credit_limit=above), OPS.actor(OPERATOR))
    security = Caller(
        Principal(
            "it-sec", ISSUER, "it-sec", "operator", "ops", None, (Grant("s", frozenset({"grants_admin"}), "all"),)
        ),
        "r",
    )
    with pytest.raises(Forbidden):
        access.decide_change(security, pending, True, commands.Decide())
    assert sql(stack, "SELECT credit_limit FROM ledger.wallets WHERE id = :w", w=wallet)[0][0] == 0
    access.decide_change(OPS_2, pending, True, commands.Decide())
    assert sql(stack, "SELECT credit_limit FROM ledger.wallets WHERE id = :w", w=wallet)[0][0] == above


def test_the_audit_log_pages_in_id_order(access):
    principal_id = new_principal(access)
    for description in ("a", "b", "c"):
        access.update_principal(OPS, principal_id, commands.UpdatePrincipal(description=description))
    query = commands.AuditQuery(target=f"principal:{principal_id}", limit=2)
    first = access.audit(OPS, query)
    second = access.audit(OPS, commands.AuditQuery(target=query.target, after=first["next"], limit=2))
    descriptions = [row["after"]["description"] for row in first["audit"] + second["audit"]]
    assert descriptions == ["", "a", "b", "c"] and second["next"] is None


# Around the procedures: the functions' own database role -------------------------


@pytest.fixture(params=[login for login in LOGINS if login != "access_admin"])
def functions_role(stack, request):
    """Each database login but the access function's: a money function's, the wallets
    function's, the sweeper's, a job's, the export's, the operator's CLI's."""
    con = login_connection(stack, request.param)
    yield con
    con.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.audit_log SET reason = 'rewritten'",
        "DELETE FROM ledger.audit_log",
        "TRUNCATE ledger.audit_log",
        "INSERT INTO ledger.audit_log (actor, action, target) VALUES ('{\"principal\": \"x\"}', 'grant.create', 'x')",
        "SELECT ledger.audit('{\"principal\": \"forged\"}', 'grant.create', 'x', NULL, NULL, NULL)",
        "INSERT INTO ledger.principals (id, issuer, subject, kind, tenant) VALUES ('x', 'i', 's', 'operator', 't')",
        "UPDATE ledger.principals SET status = 'active'",
        "INSERT INTO ledger.grants (principal_id, role, boundary) VALUES ('ops', 'operator', 'all')",
        "UPDATE ledger.grants SET status = 'active' WHERE status = 'pending'",
        "UPDATE ledger.roles SET scopes = ARRAY['topup']",
        "UPDATE ledger.pending_changes SET status = 'approved'",
        "DELETE FROM ledger.pending_changes",
        # what changes callers is the access function's role's alone: not even through
        # the procedures, with a forged actor
        "SELECT * FROM ledger.grant_role('ops', 'operator', 'all', NULL, '{\"principal\": \"x\"}')",
        'SELECT ledger.decide_change(1, true, \'{"principal": "x"}\')',
        "SELECT ledger.create_principal('x', 'i', 's', 'operator', 't', NULL, '', NULL, '{\"principal\": \"x\"}')",
        "SELECT ledger.update_principal('ops', 'disabled', NULL, NULL, '{\"principal\": \"x\"}')",
        'SELECT ledger.revoke_grant(1, \'{"principal": "x"}\')',
        "SELECT ledger.set_role_rate_limits('customer', '{}', '{\"principal\": \"x\"}')",
        "SELECT ledger.bootstrap_operator('x', 'i', 's', 't', '{\"principal\": \"x\"}')",
        # the dual-control rule is the owner's: no function passes itself a laxer one
        "UPDATE ledger.access_settings SET dual_control_credit_limit = 999999999999",
        "SELECT * FROM ledger.principals",
    ],
)
def test_the_functions_role_cannot_go_around_the_procedures(functions_role, statement):
    with pytest.raises(DatabaseError) as refused:
        functions_role.run(statement)
    assert refused.value.args[0]["C"] == "42501"  # insufficient_privilege


def test_the_operator_can_read_the_log(stack, access):
    principal_id = new_principal(access)
    operator = login_connection(stack, "operator")
    try:
        rows = operator.run("SELECT count(*) FROM ledger.audit_log WHERE target = :t", t=f"principal:{principal_id}")
    finally:
        operator.close()
    assert rows[0][0] == 1


@pytest.fixture
def access_role(stack):
    con = login_connection(stack, "access_admin")
    yield con
    con.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.access_settings SET dual_control_credit_limit = 999999999999",
        "UPDATE ledger.grants SET status = 'active' WHERE status = 'pending'",
        "SELECT ledger.bootstrap_operator('x', 'i', 's', 't', '{\"principal\": \"x\"}')",
        "SELECT * FROM ledger.update_wallet(1, 'active', 10, NULL, NULL, '{\"principal\": \"x\"}')",
        "SELECT ledger.commit_postings('[]')",
        "SELECT * FROM ledger.wallets",
    ],
)
def test_the_access_role_changes_callers_and_nothing_else(access_role, statement):
    with pytest.raises(DatabaseError) as refused:
        access_role.run(statement)
    assert refused.value.args[0]["C"] == "42501"


@pytest.mark.parametrize("statement", ["UPDATE ledger.audit_log SET reason = 'x'", "DELETE FROM ledger.audit_log"])
def test_not_even_the_owner_changes_an_audit_row(stack, statement):
    con = owner(stack)
    try:
        with pytest.raises(DatabaseError) as refused:
            con.run(statement + " WHERE id = (SELECT max(id) FROM ledger.audit_log)")
        assert refused.value.args[0]["M"] == "append_only"
    finally:
        con.close()
