"""An in-memory model of the ledger's money rules, for the model-checked tests
(tests/integration/test_ledger_model.py, test_ledger_linearizable.py).

Written from the rules (docs/ledger-model.md, docs/wallet-models.md,
docs/idempotency-and-concurrency.md, db/schema/60_lots.sql and 70_posting.sql), never
from the database: the tests compare this model with the real ledger after every step,
so a model that read the database back could not fail. Plain Python, no I/O.

What it holds: per wallet its status, credit limit, spend limits and the non-expiring
part of its balance (`general`); every lot with its expiry and remaining credit; the
spend counters per (wallet, period, period start); every posting's customer legs, the
lot pieces it took and the lots it created (what a void gives back); and per
idempotency key the first request and its outcome.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

OK = "ok"
PERIODS = ("day", "month", "week")  # the order charge_spend() takes them in (by name)


class Refusal(Exception):
    """A refusal the model predicts, by the ledger's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def period_start(period: str, at: datetime) -> datetime:
    """As ledger.period_start(): the UTC day, ISO week (Monday) or calendar month."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


@dataclass
class Lot:
    seq: int  # creation order, which the database's lot ids follow
    wallet: str
    amount: int
    remaining: int
    expires_at: datetime
    expired_by_job: bool = False  # the expiry job took from it: a void of what made it is credit_expired


@dataclass
class Wallet:
    name: str
    order: int  # creation order: the ascending-id order a posting locks wallets in
    parent: str | None = None
    root: str = ""
    personal: bool = True
    credit_limit: int = 0
    status: str = "active"
    general: int = 0  # balance - lot_balance: the part that never expires
    limits: dict[str, int] = field(default_factory=dict)


@dataclass
class Posting:
    action: str
    amount: int
    deltas: dict[str, int]  # what each customer wallet's leg moved
    taken: list[tuple[int, int]] = field(default_factory=list)  # (lot, amount), in movement order
    created: list[int] = field(default_factory=list)  # lots it created
    charges: list[tuple[str, str, datetime, int]] = field(default_factory=list)
    voided: bool = False


@dataclass(frozen=True)
class Decision:
    code: str  # OK or the refusal's code
    transaction_id: int | None = None  # a replay's posting
    replayed: bool = False
    posting: Posting | None = None  # a new posting, to be recorded under its id


class Ledger:
    def __init__(self) -> None:
        self.wallets: dict[str, Wallet] = {}
        self.lots: dict[int, Lot] = {}
        self.counters: dict[tuple[str, str, datetime], int] = {}
        self.postings: dict[int, Posting] = {}
        self.keys: dict[str, tuple[Any, str, int | None]] = {}  # key: (request, code, transaction)

    # Wallets and reads ---------------------------------------------------------

    def add_wallet(self, name: str, parent: str | None = None, tree: bool = False, credit_limit: int = 0) -> None:
        root = self.wallets[parent].root if parent else name
        self.wallets[name] = Wallet(name, len(self.wallets), parent, root, not tree, credit_limit)

    def lots_of(self, name: str) -> list[Lot]:
        return [lot for lot in self.lots.values() if lot.wallet == name]

    def lot_balance(self, name: str) -> int:
        return sum(lot.remaining for lot in self.lots_of(name))

    def balance(self, name: str) -> int:
        return self.wallets[name].general + self.lot_balance(name)

    def path(self, name: str) -> list[str]:
        wallet = self.wallets[name]
        return [*self.path(wallet.parent), name] if wallet.parent else [name]

    # Idempotency: a key answers its first request's outcome, or refuses another request

    def decide(self, key: str, request: Any, action: Callable[[], Posting]) -> Decision:
        if key in self.keys:
            first, code, transaction_id = self.keys[key]
            if first != request:
                return Decision("idempotency_key_reused")
            return Decision(code, transaction_id, replayed=True)
        try:
            posting = self.attempt(action)
        except Refusal as refusal:
            self.keys[key] = (request, refusal.code, None)  # refusals (404, 422) are kept with the key
            return Decision(refusal.code)
        self.keys[key] = (request, OK, None)
        return Decision(OK, posting=posting)

    def posted(self, key: str, transaction_id: int, posting: Posting) -> None:
        self.keys[key] = (self.keys[key][0], OK, transaction_id)
        self.postings[transaction_id] = posting

    def attempt(self, action: Callable[[], Any]) -> Any:
        """Run an action; a refusal leaves the model as it was (the posting rolled back)."""
        saved = copy.deepcopy((self.wallets, self.lots, self.counters, self.postings))
        try:
            return action()
        except Refusal:
            self.wallets, self.lots, self.counters, self.postings = saved
            raise

    # Money actions (each raises Refusal, leaving partial changes for attempt() to undo)

    def credit(self, name: str, amount: int, now: datetime, expires_at: datetime | None, action: str) -> Posting:
        """A top-up or a bonus: the wallet gains the amount, as a lot when it expires."""
        self._lock({name: amount}, now)
        posting = Posting(action, amount, {name: amount})
        if expires_at is None:
            self.wallets[name].general += amount
        elif expires_at <= now:
            raise Refusal("expiry_in_past")
        else:
            posting.created.append(self._new_lot(name, amount, expires_at))
        return posting

    def usage(self, name: str, amount: int, now: datetime) -> Posting:
        posting = Posting("usage", amount, {name: -amount}, taken=self._lock({name: -amount}, now))
        for wallet in self.path(name):  # every limit on the path, root to self
            for period in sorted(self.wallets[wallet].limits):
                start = period_start(period, now)
                if self.counters.get((wallet, period, start), 0) + amount > self.wallets[wallet].limits[period]:
                    raise Refusal("spend_limit_exceeded")
                posting.charges.append((wallet, period, start, amount))
        for wallet, period, start, charged in posting.charges:
            self.counters[(wallet, period, start)] = self.counters.get((wallet, period, start), 0) + charged
        return posting

    def transfer(self, source: str, target: str, amount: int, now: datetime) -> Posting:
        if source == target:
            raise Refusal("same_wallet")
        return self._move("transfer", source, target, amount, now, same_tree=True)

    def allocate(self, child: str, amount: int, now: datetime) -> Posting:
        parent = self._parent(child)
        return self._move("allocate", parent, child, amount, now)

    def reclaim(self, child: str, amount: int, now: datetime) -> Posting:
        parent = self._parent(child)
        return self._move("reclaim", child, parent, amount, now)

    def void(self, transaction_id: int, now: datetime) -> Posting:
        original = self.postings[transaction_id]
        if original.action == "void":
            raise Refusal("not_voidable")
        if original.voided:
            raise Refusal("already_voided")
        first = set(original.created)  # taken back first, even when expired
        deltas = {name: -moved for name, moved in original.deltas.items()}
        without_lot = original.amount - sum(self.lots[seq].amount for seq in original.created)
        try:
            taken = self._lock(deltas, now, first, without_lot)
        except Refusal as refusal:
            raise Refusal("credit_already_spent" if refusal.code == "insufficient_funds" else refusal.code) from None
        if any(self.lots[seq].expired_by_job for seq in first):
            raise Refusal("credit_expired")
        posting = Posting("void", original.amount, deltas, taken=taken)
        customer_debit = any(moved < 0 for moved in deltas.values())
        cap = sum(piece for seq, piece in taken if seq in first) if customer_debit else original.amount
        restored = 0
        for seq, piece in sorted(original.taken):  # what the original took goes back to those lots
            if restored >= cap:
                break
            piece = min(piece, cap - restored)
            self.lots[seq].remaining += piece
            restored += piece
        for wallet, period, start, charged in original.charges:
            self.counters[(wallet, period, start)] -= charged
        credited = next((name for name, moved in deltas.items() if moved > 0), None)
        if credited is not None:
            others = [(seq, piece) for seq, piece in taken if seq not in first]
            carried = self._carry(posting, others, credited, original.amount - restored)
            self.wallets[credited].general += original.amount - restored - carried
        original.voided = True
        return posting

    def expire(self, now: datetime) -> None:
        """The expiry job: every due lot's remaining credit goes to breakage, whatever
        its wallet's status."""
        for lot in self.lots.values():
            if lot.remaining > 0 and lot.expires_at <= now:
                lot.remaining = 0
                lot.expired_by_job = True

    def backdate(self, seq: int, expires_at: datetime) -> None:
        self.lots[seq].expires_at = expires_at

    def update(
        self,
        name: str,
        status: str | None = None,
        credit_limit: int | None = None,
        spend_limits: dict[str, int | None] | None = None,
    ) -> None:
        """PATCH /wallets/{id}: one change of status, credit limit or spend limits."""
        wallet = self.wallets[name]
        if wallet.status == "closed" and (
            status not in (None, "closed") or credit_limit is not None or spend_limits is not None
        ):
            raise Refusal("wallet_closed")
        if credit_limit and wallet.parent:
            raise Refusal("member_credit_limit")
        if status == "closed" and (self.balance(name) != 0 or self.lot_balance(name) != 0):
            raise Refusal("wallet_not_empty")
        if credit_limit is not None and wallet.general < -credit_limit:
            raise Refusal("credit_limit_below_balance")
        wallet.status = status or wallet.status
        wallet.credit_limit = wallet.credit_limit if credit_limit is None else credit_limit
        for period, amount in (spend_limits or {}).items():
            if amount is None:
                wallet.limits.pop(period, None)
            else:
                wallet.limits[period] = amount

    # The rules under the wallet locks -------------------------------------------

    def _parent(self, child: str) -> str:
        parent = self.wallets[child].parent
        if parent is None:
            raise Refusal("not_a_child")
        return parent

    def _move(
        self, action: str, source: str, target: str, amount: int, now: datetime, same_tree: bool = False
    ) -> Posting:
        deltas = {source: -amount, target: amount}
        posting = Posting(action, amount, deltas, taken=self._lock(deltas, now))
        a, b = self.wallets[source], self.wallets[target]
        if same_tree and not (a.personal and b.personal) and a.root != b.root:
            raise Refusal("transfer_outside_tree")
        carried = self._carry(posting, posting.taken, target, amount)
        b.general += amount - carried
        return posting

    def _lock(
        self, deltas: dict[str, int], now: datetime, first: set[int] = frozenset(), without_lot: int = 0
    ) -> list[tuple[int, int]]:
        """Each customer wallet in lock order: refused unless active, and a debit
        within its limit. The lot pieces the debit took."""
        taken: list[tuple[int, int]] = []
        for name in sorted(deltas, key=lambda n: self.wallets[n].order):
            wallet = self.wallets[name]
            if wallet.status != "active":
                raise Refusal(f"wallet_{wallet.status}")
            if deltas[name] < 0:
                taken = self._debit(wallet, -deltas[name], now, first, without_lot)
        return taken

    def _debit(
        self, wallet: Wallet, need: int, now: datetime, first: set[int], without_lot: int
    ) -> list[tuple[int, int]]:
        """ledger.debit_with_lots(): the lots `first` names (a void's original's), then
        for a void up to what its original brought without a lot from the non-expiring
        rest, then unexpired lots earliest expiry first, then the rest down to the limit."""
        taken: list[tuple[int, int]] = []
        total = 0
        own = sorted(self.lots_of(wallet.name), key=lambda lot: (lot.expires_at, lot.seq))
        for lot in [lot for lot in own if lot.seq in first and lot.remaining > 0]:
            if total == need:
                break
            piece = min(lot.remaining, need - total)
            lot.remaining -= piece
            taken.append((lot.seq, piece))
            total += piece
        general = min(need - total, max(wallet.general, 0), max(without_lot, 0))
        for lot in [lot for lot in own if lot.seq not in first and lot.remaining > 0 and lot.expires_at > now]:
            if total + general == need:
                break
            piece = min(lot.remaining, need - total - general)
            lot.remaining -= piece
            taken.append((lot.seq, piece))
            total += piece
        if wallet.general - (need - total) < -wallet.credit_limit:
            raise Refusal("insufficient_funds")
        wallet.general -= need - total
        return taken

    def _carry(self, posting: Posting, pieces: list[tuple[int, int]], target: str, budget: int) -> int:
        """Money keeps its expiry: lot pieces become lots of the customer credited."""
        carried = 0
        for seq, piece in pieces:
            if budget - carried <= 0:
                break
            piece = min(piece, budget - carried)
            posting.created.append(self._new_lot(target, piece, self.lots[seq].expires_at))
            carried += piece
        return carried

    def _new_lot(self, name: str, amount: int, expires_at: datetime) -> int:
        seq = len(self.lots)
        self.lots[seq] = Lot(seq, name, amount, amount, expires_at)
        return seq
