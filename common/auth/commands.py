"""Typed requests of the operators' API (functions/access): principals, grants, roles,
pending changes and the audit log. Strict like the ledger's commands
(common/ledger/commands.py): unknown fields and loose types are refused.

Every write takes an optional `reason`, kept with the change in the audit log.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.ledger.money import WalletId

# The shapes the tables' CHECK constraints hold (db/migrations/0007_callers.sql), so
# that a wrong value is a 400 here, not a constraint violation there. No NUL anywhere:
# Postgres refuses it in text.
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
Identity = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
Description = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True, pattern=r"^[^\x00]*$")]
PrincipalKind = Literal["service", "user", "operator"]
PrincipalStatus = Literal["active", "disabled"]
Boundary = Literal["own", "tree", "all"]
ChangeStatus = Literal["pending", "approved", "rejected", "all"]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Rate(Command):
    """One action class's limit. The bounds are the rate limiter's (common/rate_limits.py
    on the rate-limits branch: limits_of), which must be able to read whatever is stored."""

    per_second: Annotated[float, Field(ge=0.001, le=1_000_000, allow_inf_nan=False)] | None = None
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class RateLimits(Command):
    """Per action class, each field optional: what is left out comes from the level
    below (the defaults under a role's limits, the roles' under a principal's override)."""

    money: Rate | None = None
    read: Rate | None = None
    admin: Rate | None = None

    def document(self) -> dict[str, dict[str, float | int]]:
        """As stored in roles.rate_limits and principals.rate_limits."""
        return self.model_dump(mode="json", exclude_none=True)


class CreatePrincipal(Command):
    id: Name
    issuer: Identity  # the token's `iss`
    subject: Identity | None = None  # the token's `sub`; the id when left out
    kind: PrincipalKind
    tenant: Name  # scopes the principal's idempotency keys
    owner_id: Name | None = None  # the wallet owner an end user is (the `own` boundary)
    description: Description = ""
    rate_limits: RateLimits | None = None
    reason: Reason | None = None


class UpdatePrincipal(Command):
    status: PrincipalStatus | None = None
    description: Description | None = None
    rate_limits: RateLimits | None = None  # null removes the override
    reason: Reason | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdatePrincipal:
        if not {"status", "description", "rate_limits"} & self.model_fields_set:
            raise ValueError("give status, description and/or rate_limits")
        return self

    @property
    def clears_rate_limits(self) -> bool:
        return "rate_limits" in self.model_fields_set and self.rate_limits is None


class GrantRole(Command):
    role: RoleName
    boundary: Boundary
    root_wallet_id: WalletId | None = None  # the tree's top, for boundary `tree` only
    reason: Reason | None = None

    @model_validator(mode="after")
    def _tree_has_a_root(self) -> GrantRole:
        if (self.boundary == "tree") != (self.root_wallet_id is not None):
            raise ValueError("a tree boundary needs root_wallet_id, and only a tree boundary has one")
        return self


class RoleLimits(Command):
    rate_limits: RateLimits
    reason: Reason | None = None


class Decide(Command):
    """Revoking a grant, approving or rejecting a change: only why."""

    reason: Reason | None = None


class Query(BaseModel):
    """Query-string parameters arrive as text, so these models convert (but still bound)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class PrincipalsQuery(Query):
    after: Name | None = None  # the last id of the previous page
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class ChangesQuery(Query):
    status: ChangeStatus = "pending"
    after: Annotated[int, Field(ge=0, lt=2**63)] = 0
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class AuditQuery(Query):
    target: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")] | None = None
    after: Annotated[int, Field(ge=0, lt=2**63)] = 0  # the last id of the previous page
    limit: Annotated[int, Field(ge=1, le=500)] = 100
