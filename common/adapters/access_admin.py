"""Principals, grants, roles, pending changes and the audit log, for the operators' API.

Every write is one call of an audited procedure (db/schema/75_access.sql), which
refuses what it must (ledger.refuse(): principal_exists, grant_exists, ...) and writes
the audit row in the same transaction; the functions' role could not write these
tables otherwise. The reads are plain SELECTs shaped into the API's answers, like
common/adapters/ledger_queries.py's. The authorization rules are the service's
(common/access_service.py), not this module's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from common.adapters.postgres import Statements

if TYPE_CHECKING:  # annotations only: the models load with the first parsed body
    from common.auth import commands

PRINCIPAL_COLUMNS = (
    "id",
    "issuer",
    "subject",
    "kind",
    "tenant",
    "owner_id",
    "status",
    "rate_limits",
    "description",
    "created_at",
    "updated_at",
)
PRINCIPAL_SELECT = (
    "SELECT id, issuer, subject, kind, tenant, owner_id, status, rate_limits, description,"
    " ledger.iso_utc(created_at), ledger.iso_utc(updated_at) FROM ledger.principals"
)
GRANT_COLUMNS = (
    "id",
    "principal_id",
    "role",
    "scopes",
    "boundary",
    "root_wallet_id",
    "status",
    "created_at",
    "updated_at",
)
GRANT_SELECT = (
    "SELECT g.id, g.principal_id, g.role, r.scopes, g.boundary, g.root_wallet_id, g.status,"
    " ledger.iso_utc(g.created_at), ledger.iso_utc(g.updated_at)"
    " FROM ledger.grants g JOIN ledger.roles r ON r.name = g.role"
)
ROLE_COLUMNS = ("name", "scopes", "rate_limits", "description", "updated_at", "dual_control")
# dual_control: whether a grant of the role waits for a second operator whatever its
# boundary (a grant over every wallet always does): ledger.access_settings decides
ROLE_SELECT = (
    "SELECT name, scopes, rate_limits, description, ledger.iso_utc(updated_at),"
    " scopes && (SELECT dual_control_scopes FROM ledger.access_settings) FROM ledger.roles"
)
CHANGE_COLUMNS = (
    "id",
    "kind",
    "target",
    "change",
    "reason",
    "status",
    "requested_by",
    "requested_at",
    "decided_by",
    "decided_at",
)
CHANGE_SELECT = (
    "SELECT id, kind, target, change, reason, status, requested_by, ledger.iso_utc(requested_at), decided_by,"
    " ledger.iso_utc(decided_at) FROM ledger.pending_changes"
)
AUDIT_COLUMNS = ("id", "at", "actor", "action", "target", "before", "after", "reason")


def _rows(columns: tuple[str, ...], rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class AccessAdmin(Statements):
    # Principals -------------------------------------------------------------

    def create_principal(self, cmd: commands.CreatePrincipal, actor: dict[str, Any]) -> None:
        self._run(
            "SELECT ledger.create_principal(:id, :issuer, :subject, :kind, :tenant, :owner_id, :description,"
            " CAST(:rate_limits AS jsonb), CAST(:actor AS jsonb), :reason)",
            id=cmd.id,
            issuer=cmd.issuer,
            subject=cmd.subject or cmd.id,
            kind=cmd.kind,
            tenant=cmd.tenant,
            owner_id=cmd.owner_id,
            description=cmd.description,
            rate_limits=_json(cmd.rate_limits.document() if cmd.rate_limits is not None else None),
            actor=json.dumps(actor),
            reason=cmd.reason,
        )

    def update_principal(self, principal_id: str, cmd: commands.UpdatePrincipal, actor: dict[str, Any]) -> None:
        # SQL NULL leaves the override be; a JSON null removes it
        limits = "null" if cmd.clears_rate_limits else _json(cmd.rate_limits and cmd.rate_limits.document())
        self._run(
            "SELECT ledger.update_principal(:id, :status, :description, CAST(:rate_limits AS jsonb),"
            " CAST(:actor AS jsonb), :reason)",
            id=principal_id,
            status=cmd.status,
            description=cmd.description,
            rate_limits=limits,
            actor=json.dumps(actor),
            reason=cmd.reason,
        )

    def principals(self, after: str | None, limit: int) -> list[dict[str, Any]]:
        rows = self._run(
            PRINCIPAL_SELECT + " WHERE CAST(:after AS text) IS NULL OR id > CAST(:after AS text) ORDER BY id LIMIT :n",
            after=after,
            n=limit,
        )
        return _rows(PRINCIPAL_COLUMNS, rows)

    def principal(self, principal_id: str) -> dict[str, Any] | None:
        """The principal with every grant it was ever given (revoked and pending too)."""
        rows = self._run(PRINCIPAL_SELECT + " WHERE id = :id", id=principal_id)
        if not rows:
            return None
        grants = self._run(GRANT_SELECT + " WHERE g.principal_id = :id ORDER BY g.id", id=principal_id)
        return {**_rows(PRINCIPAL_COLUMNS, rows)[0], "grants": _rows(GRANT_COLUMNS, grants)}

    # Grants -----------------------------------------------------------------

    def grant_role(self, principal_id: str, cmd: commands.GrantRole, actor: dict[str, Any]) -> tuple[int, int | None]:
        """The new grant's id, and the pending change it waits on when the database's
        dual-control rule (ledger.access_settings) holds it for a second operator."""
        rows = self._run(
            "SELECT grant_id, pending_change_id FROM ledger.grant_role(:principal_id, :role, :boundary,"
            " CAST(:root AS bigint), CAST(:actor AS jsonb), :reason)",
            principal_id=principal_id,
            role=cmd.role,
            boundary=cmd.boundary,
            root=cmd.root_wallet_id,
            actor=json.dumps(actor),
            reason=cmd.reason,
        )
        return int(rows[0][0]), rows[0][1]

    def revoke_grant(self, grant_id: int, reason: str | None, actor: dict[str, Any]) -> None:
        self._run(
            "SELECT ledger.revoke_grant(:id, CAST(:actor AS jsonb), :reason)",
            id=grant_id,
            actor=json.dumps(actor),
            reason=reason,
        )

    def grant(self, grant_id: int) -> dict[str, Any] | None:
        rows = self._run(GRANT_SELECT + " WHERE g.id = :id", id=grant_id)
        return _rows(GRANT_COLUMNS, rows)[0] if rows else None

    # Roles ------------------------------------------------------------------

    def roles(self) -> list[dict[str, Any]]:
        return _rows(ROLE_COLUMNS, self._run(ROLE_SELECT + " ORDER BY name"))

    def role(self, name: str) -> dict[str, Any] | None:
        rows = self._run(ROLE_SELECT + " WHERE name = :name", name=name)
        return _rows(ROLE_COLUMNS, rows)[0] if rows else None

    def set_role_rate_limits(
        self, name: str, limits: dict[str, Any], reason: str | None, actor: dict[str, Any]
    ) -> None:
        self._run(
            "SELECT ledger.set_role_rate_limits(:name, CAST(:limits AS jsonb), CAST(:actor AS jsonb), :reason)",
            name=name,
            limits=json.dumps(limits),
            actor=json.dumps(actor),
            reason=reason,
        )

    # Pending changes (dual control) -----------------------------------------

    def change(self, change_id: int) -> dict[str, Any] | None:
        rows = self._run(CHANGE_SELECT + " WHERE id = :id", id=change_id)
        return _rows(CHANGE_COLUMNS, rows)[0] if rows else None

    def changes(self, status: str, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self._run(
            CHANGE_SELECT + " WHERE (CAST(:status AS text) = 'all' OR status = CAST(:status AS text)) AND id > :after"
            " ORDER BY id LIMIT :n",
            status=status,
            after=after,
            n=limit,
        )
        return _rows(CHANGE_COLUMNS, rows)

    def decide_change(self, change_id: int, approve: bool, reason: str | None, actor: dict[str, Any]) -> None:
        """Approved, it applies in the same transaction; the database refuses the
        requester (second_operator_required) and a change decided already."""
        self._run(
            "SELECT ledger.decide_change(:id, :approve, CAST(:actor AS jsonb), :reason)",
            id=change_id,
            approve=approve,
            actor=json.dumps(actor),
            reason=reason,
        )

    # The audit log ----------------------------------------------------------

    def audit(self, target: str | None, after: int, limit: int) -> list[dict[str, Any]]:
        # two statements, not one with "target IS NULL OR": each keeps a plan that fits it
        # (a target's rows by audit_log_by_target, the whole log by its id)
        where = "target = :target AND id > :after" if target is not None else "id > :after"
        params: dict[str, Any] = {"target": target} if target is not None else {}
        rows = self._run(
            "SELECT id, ledger.iso_utc(at), actor, action, target, before, after, reason FROM ledger.audit_log"
            f" WHERE {where} ORDER BY id LIMIT :n",
            after=after,
            n=limit,
            **params,
        )
        return _rows(AUDIT_COLUMNS, rows)
