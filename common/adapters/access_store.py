"""What authorization reads from Postgres: a token's principal with its live grants,
and the facts a tenant boundary is judged on (a wallet's owner and its path from the
root, a transaction's wallets, a lot's wallet).

Those facts never change once written (a wallet's owner and tree are fixed, postings
and lots are append-only), so each is cached for the life of the instance: a request
on a known wallet costs no extra round trip. Principals and grants do change; they are
cached by the authenticator for a short, configured while.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from common.adapters.postgres import Statements
from common.auth.callers import Grant, Principal, WalletFacts

FACTS_CACHED = 200_000  # about 200 bytes each


class _Bounded(OrderedDict[Any, Any]):
    """A size-bounded mapping that forgets the oldest entries first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._lock = threading.Lock()

    def keep(self, key: Any, value: Any) -> None:
        with self._lock:
            self[key] = value
            while len(self) > self._size:
                self.popitem(last=False)


class AccessStore(Statements):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wallets = _Bounded(FACTS_CACHED)
        self._transactions = _Bounded(FACTS_CACHED // 4)
        self._lots = _Bounded(FACTS_CACHED // 4)

    def principal(self, issuer: str, subject: str) -> Principal | None:
        """The principal and its active grants, or None when the ledger does not know
        it or has disabled it."""
        rows = self._run(
            "SELECT principal_id, kind, tenant, owner_id, status, principal_rate_limits, role, scopes, boundary,"
            " root_wallet_id, role_rate_limits FROM ledger.caller(:issuer, :subject)",
            issuer=issuer,
            subject=subject,
        )
        if not rows or rows[0][4] != "active":
            return None
        principal_id, kind, tenant, owner_id, _status, overrides = rows[0][:6]
        grants = tuple(
            Grant(role, frozenset(scopes or ()), boundary, root, limits or {})
            for *_, role, scopes, boundary, root, limits in rows
            if role is not None
        )
        return Principal(principal_id, issuer, subject, kind, tenant, owner_id, grants, overrides)

    # Each cache is read with one .get(): another thread may evict an entry between a
    # membership test and a lookup.

    def wallet_facts(self, wallet_ids: list[int]) -> dict[int, WalletFacts]:
        cached = {w: self._wallets.get(w) for w in wallet_ids}
        found = {w: facts for w, facts in cached.items() if facts is not None}
        missing = [w for w in wallet_ids if w not in found]
        if missing:
            rows = self._run(
                "SELECT id, kind, owner_id, path FROM ledger.wallets WHERE id = ANY(CAST(:ids AS bigint[]))",
                ids="{" + ",".join(str(w) for w in missing) + "}",
            )
            for wallet_id, kind, owner_id, path in rows:
                facts = found[wallet_id] = WalletFacts(wallet_id, kind, owner_id, tuple(path))
                self._wallets.keep(wallet_id, facts)
        return found

    def transaction_wallets(self, transaction_id: int) -> list[int] | None:
        """The customer wallets a transaction moved money on, or None if there is no
        such transaction."""
        cached: list[int] | None = self._transactions.get(transaction_id)
        if cached is not None:
            return cached
        rows = self._run(
            "SELECT e.wallet_id FROM ledger.entries e JOIN ledger.wallets w ON w.id = e.wallet_id"
            " WHERE e.transaction_id = :id AND w.kind = 'customer' ORDER BY e.id",
            id=transaction_id,
        )
        if not rows:
            return None
        wallets = list(dict.fromkeys(row[0] for row in rows))
        self._transactions.keep(transaction_id, wallets)
        return wallets

    def lot_wallet(self, lot_id: int) -> int | None:
        cached: int | None = self._lots.get(lot_id)
        if cached is not None:
            return cached
        rows = self._run("SELECT wallet_id FROM ledger.lots WHERE id = :id", id=lot_id)
        if not rows:
            return None
        self._lots.keep(lot_id, rows[0][0])
        return int(rows[0][0])
