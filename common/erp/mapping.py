"""Ledger transactions to ERP journal lines, and lines to batches.

One line per leg. A customer wallet is a liability, so money arriving on a leg
(a positive amount) is a credit and money leaving it a debit, on whichever account
the leg maps to; the same rule holds for the system accounts on the other side:

    top-up     Dr funding (cash clearing)        Cr customer (deferred revenue)
               at a wholesale price also Dr discount (sales discounts) for the difference
    add-on     Dr funding (cash clearing)        Cr customer (deferred revenue)
    bonus      Dr promotion expense              Cr customer (deferred revenue)
    usage      Dr customer (deferred revenue)    Cr revenue
    expiry     Dr customer (deferred revenue)    Cr breakage revenue
    dormant sweep  Dr customer (deferred revenue)  Cr dormant balances (a liability)
    dormant breakage  Dr customer (deferred revenue)  Cr breakage revenue
    transfer   Dr customer (payer's model)       Cr customer (payee's model): no P&L
    allocate, reclaim: as a transfer, within one enterprise's or reseller's tree
    migration transfer: as a transfer, between any two wallets (a migration's move)
    void       the exact reverse of the original (its legs are the original's, negated);
               a dormant wallet's reactivation (the void of its sweep or breakage) has
               its own event type, dormant_reactivation

Every line names the transaction's customer (the owner of the wallet that acted: the
member who used, the reseller's end customer) and, in a reseller's tree, the reseller,
so the ERP can attribute revenue and cost per reseller, per customer and per usage id;
and the actor, the caller that posted it (its principal and role).

A ledger transaction's legs sum to zero per asset, so its lines balance per currency,
and so does every batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.erp.chart import Chart

# An export position: (the creating database transaction's xid8, as text; ledger transaction id).
Position = tuple[str, int]

# The ERP's event type of each ledger action.
EVENT_TYPES = {
    "topup": "cash_receipt",
    "addon": "cash_receipt",
    "bonus": "promotion",
    "usage": "revenue",
    "expiry": "breakage_revenue",
    "transfer": "internal_transfer",
    "allocate": "internal_transfer",
    "reclaim": "internal_transfer",
    "void": "reversal",
    "opening_balance": "opening_balance",
    "dormant_sweep": "dormant_sweep",  # liability to liability: the dormant account still owes it
    "dormant_breakage": "dormant_breakage",  # deferred revenue recognized: breakage at dormancy
    "migration_transfer": "migration_transfer",  # customer to customer, as a transfer: no P&L
}
# A migration's own actions (docs/migrations.md); with their voids, what a chart that
# excludes migrations gives no lines.
MIGRATION_ACTIONS = ("opening_balance", "migration_transfer")


@dataclass(frozen=True, slots=True)
class Leg:
    wallet_id: int
    owner_id: str
    kind: str  # customer or system
    model: str
    system_role: str | None
    amount: int


@dataclass(frozen=True, slots=True)
class Transaction:
    transaction_id: int
    action: str
    asset: str
    effective_at: str  # ISO 8601 UTC
    usage_id: str | None
    product: str | None
    external_ref: str | None
    voids_transaction_id: int | None
    legs: tuple[Leg, ...]
    customer_id: str | None = None  # the owner of the wallet that acted
    reseller_id: str | None = None  # the reseller, when that wallet is in a reseller's tree
    actor: str | None = None  # the principal that posted it (None before callers existed)
    actor_role: str | None = None  # the role its grant gave it
    event_type: str | None = None  # set where the action alone does not name it (a dormant reactivation)
    migration: bool = False  # a migration's posting, or a void of one


class Mapper:
    """Maps transactions with one chart, remembering each account lookup."""

    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self._accounts: dict[tuple[str, str, str], tuple[str, str]] = {}

    def _account(self, asset: str, leg: Leg) -> tuple[str, str]:
        role = "customer" if leg.kind == "customer" else (leg.system_role or "")
        found = self._accounts.get((asset, role, leg.model))
        if found is None:
            found = self._accounts[(asset, role, leg.model)] = (
                self.chart.account(asset, role, leg.model),
                self.chart.currency(asset),
            )
        return found

    def lines(self, transaction: Transaction) -> list[dict[str, Any]]:
        if transaction.migration and self.chart.excludes_migrations:
            return []
        period = transaction.effective_at[:10]  # the UTC day the ERP posts it on
        lines = []
        for leg in transaction.legs:
            account, currency = self._account(transaction.asset, leg)
            lines.append(
                {
                    "event_id": str(transaction.transaction_id),
                    "transaction_id": transaction.transaction_id,
                    "action": transaction.action,
                    "event_type": transaction.event_type or EVENT_TYPES.get(transaction.action, transaction.action),
                    "period": period,
                    "effective_at": transaction.effective_at,
                    "account": account,
                    "currency": currency,
                    "debit": -leg.amount if leg.amount < 0 else 0,
                    "credit": leg.amount if leg.amount > 0 else 0,
                    "wallet_id": leg.wallet_id,
                    "owner_id": leg.owner_id,
                    "wallet_model": leg.model,
                    "customer_id": transaction.customer_id,
                    "reseller_id": transaction.reseller_id,
                    "usage_id": transaction.usage_id,
                    "product": transaction.product,
                    "external_ref": transaction.external_ref,
                    "voids_transaction_id": transaction.voids_transaction_id,
                    "actor": transaction.actor,
                    "actor_role": transaction.actor_role,
                }
            )
        return lines


def batch_id(stream: str, after: Position, last: Position, chart_version: str) -> str:
    """The same range of the ledger, in the same export stream, under the same chart is
    always the same batch. (Streams feed different ERPs; each has its own batch ids.)"""
    source = f"{stream}|{after[0]}:{after[1]}|{last[0]}:{last[1]}|{chart_version}"
    return "erp-" + hashlib.sha256(source.encode()).hexdigest()[:32]


def totals(lines: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Debits and credits per currency."""
    sums: dict[str, dict[str, int]] = {}
    for line in lines:
        currency = sums.setdefault(line["currency"], {"debit": 0, "credit": 0})
        currency["debit"] += line["debit"]
        currency["credit"] += line["credit"]
    return sums


def unbalanced(batch_totals: dict[str, dict[str, int]]) -> list[str]:
    return sorted(c for c, sums in batch_totals.items() if sums["debit"] != sums["credit"])
