"""Principals, their grants, and the tenant boundary: pure rules, no I/O.

A verified token names a principal; the principal's grants say which scopes it holds
and where (its own wallets, a tree, or every wallet). `authorize` picks the grant that
allows an action on the wallets it touches, or refuses: 403 `forbidden` when the caller
holds no grant with the scope at all, and the wallet's own 404 when the wallets lie
outside every boundary it has, so that ids can't be probed (a wallet that exists
elsewhere and one that doesn't exist answer alike).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.errors import Forbidden, NotFound

SCOPES = (
    "topup",  # top-ups and add-ons: money that came in through the payment provider
    "bonus",
    "usage",
    "transfer",
    "void",
    "allocate",  # allocate and reclaim along a tree's edges
    "wallet_admin",
    "read",
    "asset_admin",
    "grants_admin",
)
BOUNDARIES = ("own", "tree", "all")
ACTION_CLASSES = ("money", "read", "admin")


@dataclass(frozen=True)
class Grant:
    role: str
    scopes: frozenset[str]
    boundary: str  # own, tree or all
    root_wallet_id: int | None = None
    rate_limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Principal:
    id: str
    issuer: str
    subject: str
    kind: str  # service, user or operator
    tenant: str
    owner_id: str | None = None
    grants: tuple[Grant, ...] = ()
    rate_limits: Mapping[str, Any] | None = None  # overrides the roles' limits


@dataclass(frozen=True)
class Caller:
    """A principal on one request: `request_id` is the server's id for the request,
    `client_request_id` the caller's own X-Request-Id, if it sent a plain one."""

    principal: Principal
    request_id: str
    client_request_id: str | None = None

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    def actor(self, grant: Grant | None = None) -> dict[str, Any]:
        """Who did it, as postings, events, ERP lines and audit rows record it. The
        request id is always the server's (a caller's own id could be another's); the
        caller's is kept beside it, when it sent one."""
        actor = {
            "principal": self.principal.id,
            "issuer": self.principal.issuer,
            "role": grant.role if grant is not None else None,
            "tenant": self.principal.tenant,
            "request_id": self.request_id,
        }
        if self.client_request_id is not None:
            actor["client_request_id"] = self.client_request_id
        return actor

    def grants_with(self, scope: str) -> list[Grant]:
        return [grant for grant in self.principal.grants if scope in grant.scopes]

    def unbounded(self, scope: str) -> Grant | None:
        return next((grant for grant in self.grants_with(scope) if grant.boundary == "all"), None)


@dataclass(frozen=True)
class WalletFacts:
    """What a boundary is judged on; none of it ever changes once the wallet exists."""

    id: int
    kind: str  # customer or system
    owner_id: str
    path: tuple[int, ...]  # the wallet's ancestors from its root, itself last


def within(grant: Grant, principal: Principal, wallet: WalletFacts | None) -> bool:
    if grant.boundary == "all":
        return True
    if wallet is None or wallet.kind != "customer":
        return False
    if grant.boundary == "own":
        return principal.owner_id is not None and wallet.owner_id == principal.owner_id
    return grant.root_wallet_id is not None and grant.root_wallet_id in wallet.path


def wallet_hidden(wallet_id: int) -> NotFound:
    return NotFound(f"wallet {wallet_id} does not exist", code="wallet_not_found", details={"wallet_id": wallet_id})


def authorize(
    caller: Caller,
    scope: str,
    wallet_ids: Iterable[int],
    facts: Callable[[list[int]], Mapping[int, WalletFacts]],
    hidden: Callable[[int], NotFound] = wallet_hidden,
) -> Grant:
    """The grant that lets `caller` use `scope` on every one of `wallet_ids`. `facts`
    is asked only when no grant with the scope covers every wallet. Asking with no
    wallets is a bug unless the caller's scope is unbounded: a bounded grant covers
    wallets, never nothing."""
    grants = caller.grants_with(scope)
    if not grants:
        raise Forbidden(f"this caller may not {scope.replace('_', ' ')}", details={"scope": scope})
    unbounded = caller.unbounded(scope)
    if unbounded is not None:
        return unbounded
    ids = list(dict.fromkeys(wallet_ids))
    if not ids:
        raise ValueError(f"authorize({scope!r}) was asked about no wallet for a bounded caller")
    known = facts(ids)
    for grant in grants:
        if all(within(grant, caller.principal, known.get(wallet_id)) for wallet_id in ids):
            return grant
    outside = next((w for w in ids if not any(within(g, caller.principal, known.get(w)) for g in grants)), ids[0])
    raise hidden(outside)


def as_seen_by(
    caller: Caller, transaction: Mapping[str, Any], facts: Callable[[list[int]], Mapping[int, WalletFacts]]
) -> dict[str, Any]:
    """A transaction as `caller` may see it, with the same keys. No caller sees another
    tenant's idempotency key. A caller without read over every wallet also sees no
    running balance of a wallet outside its read grants (an allocation's parent above a
    division's root, a payee elsewhere) and the actor only of its own tenant's postings
    (a back office's void of a customer's usage names no one to the customer). `facts`
    is asked only about wallets with a balance to hide (system accounts keep none)."""
    actor = transaction.get("actor")
    ours = isinstance(actor, Mapping) and actor.get("tenant") == caller.tenant
    key = transaction.get("idempotency_key") if ours else None
    if caller.unbounded("read") is not None:
        # who posted, for every wallet's reader; a key never leaves its tenant (whoever
        # learns one could post under it first)
        return {**transaction, "idempotency_key": key}
    grants = caller.grants_with("read")
    balances = [e["wallet_id"] for e in transaction["entries"] if e["balance_after"] is not None]
    known = facts(list(dict.fromkeys(balances))) if balances and grants else {}

    def readable(wallet_id: int) -> bool:
        return any(within(grant, caller.principal, known.get(wallet_id)) for grant in grants)

    return {
        **transaction,
        "entries": [
            entry
            if entry["balance_after"] is None or readable(entry["wallet_id"])
            else {**entry, "balance_after": None}
            for entry in transaction["entries"]
        ],
        "actor": actor if ours else None,
        "idempotency_key": key,
    }


def visible(caller: Caller, wallets: Iterable[WalletFacts]) -> list[WalletFacts]:
    """The wallets a caller may read, in the order given."""
    grants = caller.grants_with("read")
    return [w for w in wallets if any(within(g, caller.principal, w) for g in grants)]
