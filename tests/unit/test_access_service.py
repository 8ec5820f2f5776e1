"""Who may manage callers, and which grants and changes wait for a second operator
(common/access_service.py), with a stand-in adapter: the rules alone."""

import pytest

from common.access_service import AccessService
from common.auth import commands
from common.auth.callers import Caller, Grant, Principal
from common.errors import Forbidden, NotFound, Refused

OPERATOR = Grant("operator", frozenset({"read", "wallet_admin", "asset_admin", "grants_admin"}), "all")
GRANTS_ONLY = Grant("security", frozenset({"grants_admin"}), "all")
TREE_ADMIN = Grant("grants_in_tree", frozenset({"grants_admin", "wallet_admin"}), "tree", 10)


def caller(principal_id, *grants, kind="operator"):
    return Caller(Principal(principal_id, "iss", principal_id, kind, "t", None, tuple(grants)), "req")


class FakeAdmin:
    """Records the writes; knows one role per scope set and the changes it is given."""

    ROLES = {
        "customer": ["read", "transfer"],
        "metering_service": ["usage", "read"],
        "payment_service": ["topup", "read"],
        "operator": ["read", "void", "wallet_admin", "grants_admin"],
    }

    def __init__(self, changes=None):
        self.writes = []
        self.changes_ = changes or {}

    def __getattr__(self, name):  # any other write
        def write(*args):
            self.writes.append((name, *args))

        return write

    def role(self, name):
        scopes = self.ROLES.get(name)
        return None if scopes is None else {"name": name, "scopes": scopes}

    def roles(self):
        return [self.role(name) for name in self.ROLES]

    def grant_role(self, principal_id, cmd, actor):
        # the database decides what waits (ledger.access_settings); here: every grant over all
        held = cmd.boundary == "all"
        self.writes.append(("grant_role", principal_id, cmd.role, held, actor["principal"]))
        return 5, (9 if held else None)

    def grant(self, grant_id):
        return {"id": grant_id}

    def principal(self, principal_id):
        return {"id": principal_id} if principal_id == "known" else None

    def change(self, change_id):
        return self.changes_.get(change_id)


def service(changes=None):
    return AccessService(FakeAdmin(changes))


@pytest.mark.parametrize(
    "who",
    [
        caller("alice", Grant("customer", frozenset({"read", "transfer"}), "own"), kind="user"),
        caller("acme", TREE_ADMIN),  # grants admin, but only within a tree
        caller("payments", Grant("payment_service", frozenset({"topup", "read"}), "all"), kind="service"),
        caller("nobody"),
    ],
)
def test_every_use_case_needs_grants_admin_over_every_wallet(who):
    svc = service({1: {"kind": "grant", "change": {"principal_id": "x"}}})
    calls = [
        lambda: svc.create_principal(who, commands.CreatePrincipal(id="p", issuer="i", kind="user", tenant="t")),
        lambda: svc.list_principals(who, commands.PrincipalsQuery()),
        lambda: svc.get_principal(who, "known"),
        lambda: svc.update_principal(who, "known", commands.UpdatePrincipal(status="disabled")),
        lambda: svc.grant_role(who, "known", commands.GrantRole(role="customer", boundary="all")),
        lambda: svc.revoke_grant(who, 1, commands.Decide()),
        lambda: svc.list_roles(who),
        lambda: svc.set_role_rate_limits(who, "customer", commands.RoleLimits(rate_limits=commands.RateLimits())),
        lambda: svc.list_changes(who, commands.ChangesQuery()),
        lambda: svc.decide_change(who, 1, True, commands.Decide()),
        lambda: svc.audit(who, commands.AuditQuery()),
    ]
    for use_case in calls:
        with pytest.raises(Forbidden) as refused:
            use_case()
        assert refused.value.details == {"scope": "grants_admin"}
    assert svc.admin.writes == []


def test_a_grant_answers_with_its_pending_change_when_the_database_holds_it():
    svc = service()
    ops = caller("ops", OPERATOR)
    assert "pending_change_id" not in svc.grant_role(ops, "known", commands.GrantRole(role="customer", boundary="own"))
    held = svc.grant_role(ops, "known", commands.GrantRole(role="metering_service", boundary="all"))
    assert held["pending_change_id"] == 9
    assert all(w[4] == "ops" for w in svc.admin.writes)  # the actor is the caller
    with pytest.raises(Refused) as unknown:
        svc.grant_role(ops, "known", commands.GrantRole(role="wizard", boundary="own"))
    assert unknown.value.code == "unknown_role"


GRANT_CHANGE = {"kind": "grant", "change": {"grant_id": 5, "principal_id": "ops-3"}, "status": "pending"}
CREDIT_CHANGE = {"kind": "credit_limit", "change": {"wallet_id": 16, "credit_limit": 500_000}, "status": "pending"}


def test_only_an_operator_decides_a_change():
    svc = service({1: GRANT_CHANGE})
    robot = caller("robot", OPERATOR, kind="service")
    with pytest.raises(Forbidden, match="only an operator"):
        svc.decide_change(robot, 1, True, commands.Decide())
    svc.decide_change(caller("ops-2", OPERATOR), 1, True, commands.Decide(reason="ok"))
    assert svc.admin.writes[-1][:4] == ("decide_change", 1, True, "ok")


def test_a_credit_limit_change_needs_wallet_admin_over_every_wallet_too():
    svc = service({2: CREDIT_CHANGE})
    with pytest.raises(Forbidden) as refused:
        svc.decide_change(caller("security", GRANTS_ONLY), 2, True, commands.Decide())
    assert refused.value.details == {"scope": "wallet_admin"} and svc.admin.writes == []
    svc.decide_change(caller("ops-2", OPERATOR), 2, False, commands.Decide())
    name, change_id, approve, _reason, actor = svc.admin.writes[-1]
    assert (name, change_id, approve, actor["role"]) == ("decide_change", 2, False, "operator")


def test_the_grantee_never_decides_a_grant_to_itself():
    svc = service({1: GRANT_CHANGE})
    with pytest.raises(Forbidden) as refused:
        svc.decide_change(caller("ops-3", OPERATOR), 1, True, commands.Decide())
    assert refused.value.code == "second_operator_required" and svc.admin.writes == []


def test_unknown_principals_and_changes_are_404s():
    svc, ops = service(), caller("ops", OPERATOR)
    with pytest.raises(NotFound) as principal:
        svc.get_principal(ops, "unknown")
    with pytest.raises(NotFound) as change:
        svc.decide_change(ops, 404, True, commands.Decide())
    assert (principal.value.code, change.value.code) == ("principal_not_found", "change_not_found")
