"""The state the model-checked tests compare, read two ways: from the database (owner
SQL, going around the service) and from the in-memory model. Both give the same shape,
so a test compares them with `==` and pytest shows the difference.

Per wallet: balance, lot balance, status and credit limit; every lot of those wallets
by wallet in creation order (amount, remaining, expiry: a wallet's lots are made
under its lock, so their order is the order of its postings); the spend limits; the spend
counters that are not zero, per (wallet, period, period start).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from tests.ledger_model import Ledger


def from_database(con: Any, ids: dict[str, int]) -> tuple[dict[str, Any], list[int]]:
    """The snapshot, and the database ids of all those lots in creation order."""
    names = {wallet_id: name for name, wallet_id in ids.items()}
    wallet_ids = list(ids.values())
    wallets = con.run(
        "SELECT id, balance, lot_balance, status, credit_limit FROM ledger.wallets"
        " WHERE id = ANY (CAST(:ids AS bigint[]))",
        ids=wallet_ids,
    )
    lots = con.run(
        "SELECT id, wallet_id, amount, remaining, expires_at FROM ledger.lots"
        " WHERE wallet_id = ANY (CAST(:ids AS bigint[])) ORDER BY id",
        ids=wallet_ids,
    )
    limits = con.run(
        "SELECT wallet_id, period, amount FROM ledger.spend_limits WHERE wallet_id = ANY (CAST(:ids AS bigint[]))",
        ids=wallet_ids,
    )
    spent = con.run(
        "SELECT wallet_id, period, period_start, spent FROM ledger.spend_counters"
        " WHERE wallet_id = ANY (CAST(:ids AS bigint[])) AND spent <> 0",
        ids=wallet_ids,
    )
    snapshot = {
        "wallets": {
            names[w]: (balance, lot_balance, status, limit) for w, balance, lot_balance, status, limit in wallets
        },
        "lots": {
            name: [(amount, remaining, at.astimezone(UTC)) for _, w, amount, remaining, at in lots if w == ids[name]]
            for name in ids
        },
        "limits": {(names[w], period): amount for w, period, amount in limits},
        "spent": {(names[w], period, start.astimezone(UTC)): value for w, period, start, value in spent},
    }
    return snapshot, [row[0] for row in lots]


def from_model(model: Ledger) -> dict[str, Any]:
    return {
        "wallets": {
            name: (model.balance(name), model.lot_balance(name), w.status, w.credit_limit)
            for name, w in model.wallets.items()
        },
        "lots": {
            name: [
                (lot.amount, lot.remaining, lot.expires_at)
                for lot in sorted(model.lots_of(name), key=lambda lot: lot.seq)
            ]
            for name in model.wallets
        },
        "limits": {(name, period): amount for name, w in model.wallets.items() for period, amount in w.limits.items()},
        "spent": {counter: value for counter, value in model.counters.items() if value},
    }
