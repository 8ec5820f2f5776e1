"""Posting rules: which legs each action writes. Pure functions over commands.

Sign convention: a leg's amount is added to its wallet, so a customer's balance is the
sum of its entries and every posting's legs sum to zero. System accounts take the
other side: funding (money received, going negative as it is issued), promotion
(bonuses granted), revenue (usage earned), breakage (expired credit, posted by the
database's expiry job), discount (a wholesale price's difference).

Each rule here is the Python half of a posting rule; its SQL half is the branch of
ledger.commit_posting() for the same action (db/schema/70_posting.sql, whose header
pairs them up). Which lots a debit takes, who pays in a shared pool, which spend limits
a usage charges and whether a transfer stays in its tree, the database decides under
the wallet locks; these rules only say what moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from common.errors import Refused

if TYPE_CHECKING:  # annotations only: the command models load with the first parsed body
    from common.ledger import commands


@dataclass(frozen=True)
class SystemAccounts:
    """The system wallets of one asset."""

    asset: str
    funding: int
    revenue: int
    promotion: int
    breakage: int
    discount: int


@dataclass(frozen=True)
class Leg:
    wallet_id: int
    amount: int


@dataclass(frozen=True)
class Posting:
    action: str
    asset: str
    amount: int
    wallet_id: int
    legs: tuple[Leg, ...]
    counterparty_wallet_id: int | None = None
    external_ref: str | None = None
    usage_id: str | None = None
    product: str | None = None
    description: str | None = None
    voids_transaction_id: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    lot_expires_at: datetime | None = None  # the credit becomes a lot expiring then

    def __post_init__(self) -> None:
        if sum(leg.amount for leg in self.legs) != 0 or len(self.legs) < 2:
            raise ValueError("a posting's legs must balance")


def _move(source: int, target: int, amount: int) -> tuple[Leg, ...]:
    return (Leg(source, -amount), Leg(target, amount))


def top_up(cmd: commands.TopUp, accounts: SystemAccounts) -> Posting:
    """Funding to the wallet; at a wholesale price, the funding leg is what was paid and
    the discount account gives the rest."""
    if cmd.price is None or cmd.price == cmd.amount:
        legs = _move(accounts.funding, cmd.wallet_id, cmd.amount)
    else:
        legs = (
            Leg(accounts.funding, -cmd.price),
            Leg(accounts.discount, cmd.price - cmd.amount),
            Leg(cmd.wallet_id, cmd.amount),
        )
    metadata = dict(cmd.metadata) if cmd.price is None else {**cmd.metadata, "price": cmd.price}
    return Posting(
        "topup",
        cmd.asset,
        cmd.amount,
        cmd.wallet_id,
        legs,
        external_ref=cmd.external_ref,
        description=cmd.description,
        metadata=metadata,
        lot_expires_at=cmd.expires_at,
    )


def add_on(cmd: commands.AddOn, accounts: SystemAccounts) -> Posting:
    return Posting(
        "addon",
        cmd.asset,
        cmd.amount,
        cmd.wallet_id,
        _move(accounts.funding, cmd.wallet_id, cmd.amount),
        external_ref=cmd.external_ref,
        product=cmd.plan,
        description=cmd.description,
        metadata=dict(cmd.metadata),
        lot_expires_at=cmd.expires_at,
    )


def bonus(cmd: commands.Bonus, accounts: SystemAccounts) -> Posting:
    return Posting(
        "bonus",
        cmd.asset,
        cmd.amount,
        cmd.wallet_id,
        _move(accounts.promotion, cmd.wallet_id, cmd.amount),
        external_ref=cmd.campaign,
        description=cmd.description,
        metadata=dict(cmd.metadata),
        lot_expires_at=cmd.expires_at,
    )


def usage(cmd: commands.Usage, accounts: SystemAccounts) -> Posting:
    """Wallet to revenue. SQL half: a shared pool's member has the pool pay, and every
    spend limit on the wallet's path is charged."""
    return Posting(
        "usage",
        cmd.asset,
        cmd.amount,
        cmd.wallet_id,
        _move(cmd.wallet_id, accounts.revenue, cmd.amount),
        usage_id=cmd.usage_id,
        product=cmd.product,
        description=cmd.description,
        metadata=dict(cmd.metadata),
    )


def transfer(cmd: commands.Transfer) -> Posting:
    """Wallet to wallet. SQL half: both personal or in one tree, lot credit carried."""
    if cmd.from_wallet_id == cmd.to_wallet_id:
        raise Refused(
            "a transfer needs two different wallets", code="same_wallet", details={"wallet_id": cmd.from_wallet_id}
        )
    return Posting(
        "transfer",
        cmd.asset,
        cmd.amount,
        cmd.from_wallet_id,
        _move(cmd.from_wallet_id, cmd.to_wallet_id, cmd.amount),
        counterparty_wallet_id=cmd.to_wallet_id,
        description=cmd.description,
        metadata=dict(cmd.metadata),
    )


def allocate(cmd: commands.Allocate, parent_id: int) -> Posting:
    """Parent to child. `wallet_id` is the child, the counterparty its parent. SQL half:
    the edge is checked (not_a_child), lot credit carried down."""
    return _along_edge("allocate", cmd, parent_id, _move(parent_id, cmd.wallet_id, cmd.amount))


def reclaim(cmd: commands.Reclaim, parent_id: int) -> Posting:
    """Child back to parent."""
    return _along_edge("reclaim", cmd, parent_id, _move(cmd.wallet_id, parent_id, cmd.amount))


def _along_edge(action: str, cmd: commands.Allocate, parent_id: int, legs: tuple[Leg, ...]) -> Posting:
    return Posting(
        action,
        cmd.asset,
        cmd.amount,
        cmd.wallet_id,
        legs,
        counterparty_wallet_id=parent_id,
        description=cmd.description,
        metadata=dict(cmd.metadata),
    )


def reversal(original: dict[str, Any], cmd: commands.Void, retry_of_this_void: bool = False) -> Posting:
    """The exact opposite of an earlier transaction, leg by leg.

    A void can't be voided (post the action again instead), and a transaction is
    voided at most once: the database's unique key on voids_transaction_id is the
    guard, this check is the friendly first line. A retry of the very void that did
    it (same idempotency key) goes through, and Postgres replays it.
    """
    if original["action"] == "void":
        raise Refused("a void cannot itself be voided", code="not_voidable", details={"transaction_id": original["id"]})
    if original["action"] == "expiry":
        # the credit expired; to give it back, post a bonus (with a new expiry if wanted)
        raise Refused("an expiry cannot be voided", code="not_voidable", details={"transaction_id": original["id"]})
    if original.get("voided_by") is not None and not retry_of_this_void:
        raise Refused(
            "the transaction is already voided",
            code="already_voided",
            details={"transaction_id": original["id"], "voided_by": original["voided_by"]},
        )
    legs = tuple(Leg(entry["wallet_id"], -entry["amount"]) for entry in original["entries"])
    return Posting(
        "void",
        original["asset"],
        original["amount"],
        original["wallet_id"],
        legs,
        counterparty_wallet_id=original["counterparty_wallet_id"],
        usage_id=original["usage_id"],
        product=original["product"],
        description=cmd.reason,
        voids_transaction_id=original["id"],
    )


def void_refusal(error: Refused, original_id: int) -> Refused:
    """Translate a refusal met while reversing into the void's own vocabulary.

    Policy: a void never pushes a customer below its limit. Voiding a top-up whose
    credit was already spent is refused, not turned into debt.
    """
    if error.code == "insufficient_funds":
        return Refused(
            "the credit this transaction brought has already been spent",
            code="credit_already_spent",
            details={**(error.details or {}), "transaction_id": original_id},
        )
    return error
