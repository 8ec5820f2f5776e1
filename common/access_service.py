"""Use cases of the operators' API: principals, grants, roles' rate limits, dual control
and the audit log (functions/access).

Like common/service.py, every use case takes the verified `Caller` first and authorizes
it before anything is read or written. The rules (docs/callers-and-grants.md):

- Every route needs `grants_admin` over every wallet (boundary `all`): only operators
  manage callers, and a tenant's admin can't grant itself more. Anything less is a 403.
- A grant waits for a second operator when its boundary is `all`, or its role holds
  any scope of ledger.access_settings' dual_control_scopes (topup, bonus, void,
  asset_admin and grants_admin by default). The database decides it, so no function can
  pass itself a laxer rule.
- A pending change is decided by a principal of kind `operator`; a credit-limit change
  also needs `wallet_admin` over every wallet (the right that sets credit limits). The
  requester never decides their own change (the database refuses it:
  second_operator_required), and the grantee never decides a grant to itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.auth.callers import Caller, Grant
from common.errors import Forbidden, NotFound, Refused

if TYPE_CHECKING:  # the adapter loads with its client, the models with the first parsed body
    from common.adapters.access_admin import AccessAdmin
    from common.auth import commands


def _page(name: str, rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page of at most `limit` rows, read with one more to tell whether another page
    follows: `next` is the `after` that reads it, or None on the last page."""
    more = len(rows) > limit
    return {name: rows[:limit], "next": rows[limit - 1]["id"] if more else None}


class AccessService:
    def __init__(self, admin: AccessAdmin) -> None:
        self.admin = admin

    def _operator(self, caller: Caller) -> Grant:
        grant = caller.unbounded("grants_admin")
        if grant is None:
            raise Forbidden("managing callers needs grants admin over every wallet", details={"scope": "grants_admin"})
        return grant

    # Principals -------------------------------------------------------------

    def create_principal(self, caller: Caller, cmd: commands.CreatePrincipal) -> dict[str, Any]:
        grant = self._operator(caller)
        self.admin.create_principal(cmd, caller.actor(grant))
        return self._principal(cmd.id)

    def list_principals(self, caller: Caller, query: commands.PrincipalsQuery) -> dict[str, Any]:
        self._operator(caller)
        return _page("principals", self.admin.principals(query.after, query.limit + 1), query.limit)

    def get_principal(self, caller: Caller, principal_id: str) -> dict[str, Any]:
        self._operator(caller)
        return self._principal(principal_id)

    def update_principal(self, caller: Caller, principal_id: str, cmd: commands.UpdatePrincipal) -> dict[str, Any]:
        grant = self._operator(caller)
        self.admin.update_principal(principal_id, cmd, caller.actor(grant))
        return self._principal(principal_id)

    def _principal(self, principal_id: str) -> dict[str, Any]:
        principal = self.admin.principal(principal_id)
        if principal is None:
            raise NotFound(
                f"principal {principal_id} does not exist",
                code="principal_not_found",
                details={"principal_id": principal_id},
            )
        return principal

    # Grants -----------------------------------------------------------------

    def grant_role(self, caller: Caller, principal_id: str, cmd: commands.GrantRole) -> dict[str, Any]:
        """The new grant, active at once or pending with the change that waits for a
        second operator (`pending_change_id`)."""
        grant = self._operator(caller)
        role = self.admin.role(cmd.role)
        if role is None:
            raise Refused(f"there is no role {cmd.role}", code="unknown_role", details={"role": cmd.role})
        grant_id, pending = self.admin.grant_role(principal_id, cmd, caller.actor(grant))
        created = self._grant(grant_id)
        return created if pending is None else {**created, "pending_change_id": pending}

    def revoke_grant(self, caller: Caller, grant_id: int, cmd: commands.Decide) -> dict[str, Any]:
        grant = self._operator(caller)
        self.admin.revoke_grant(grant_id, cmd.reason, caller.actor(grant))
        return self._grant(grant_id)

    def _grant(self, grant_id: int) -> dict[str, Any]:
        grant = self.admin.grant(grant_id)
        if grant is None:
            raise NotFound(f"grant {grant_id} does not exist", code="grant_not_found", details={"grant_id": grant_id})
        return grant

    # Roles ------------------------------------------------------------------

    def list_roles(self, caller: Caller) -> list[dict[str, Any]]:
        """Each role, with whether a grant of it waits for a second operator whatever
        its boundary (`dual_control`; a grant over every wallet always does)."""
        self._operator(caller)
        return self.admin.roles()

    def set_role_rate_limits(self, caller: Caller, name: str, cmd: commands.RoleLimits) -> dict[str, Any]:
        grant = self._operator(caller)
        self.admin.set_role_rate_limits(name, cmd.rate_limits.document(), cmd.reason, caller.actor(grant))
        role = self.admin.role(name)
        if role is None:  # dropped in between: not by this API, which never drops one
            raise NotFound(f"role {name} does not exist", code="role_not_found", details={"role": name})
        return role

    # Pending changes (dual control) -----------------------------------------

    def list_changes(self, caller: Caller, query: commands.ChangesQuery) -> dict[str, Any]:
        self._operator(caller)
        return _page("changes", self.admin.changes(query.status, query.after, query.limit + 1), query.limit)

    def decide_change(self, caller: Caller, change_id: int, approve: bool, cmd: commands.Decide) -> dict[str, Any]:
        grant = self._operator(caller)
        if caller.principal.kind != "operator":
            raise Forbidden("only an operator decides a pending change", details={"kind": caller.principal.kind})
        change = self.admin.change(change_id)
        if change is None:
            raise NotFound(
                f"change {change_id} does not exist", code="change_not_found", details={"change_id": change_id}
            )
        if change["kind"] == "credit_limit":
            wallet_admin = caller.unbounded("wallet_admin")
            if wallet_admin is None:
                raise Forbidden(
                    "deciding a credit limit needs wallet admin over every wallet", details={"scope": "wallet_admin"}
                )
            grant = wallet_admin
        elif change["change"].get("principal_id") == caller.principal.id:
            raise Forbidden(
                "a grant to a principal is decided by another operator",
                code="second_operator_required",
                details={"change_id": change_id},
            )
        self.admin.decide_change(change_id, approve, cmd.reason, caller.actor(grant))
        return self.admin.change(change_id) or change  # a change is never deleted

    # The audit log ----------------------------------------------------------

    def audit(self, caller: Caller, query: commands.AuditQuery) -> dict[str, Any]:
        self._operator(caller)
        return _page("audit", self.admin.audit(query.target, query.after, query.limit + 1), query.limit)
