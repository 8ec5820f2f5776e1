"""Moves between wallets already in the ledger, the rules without I/O: what a plan row
is, when it is rejected, what "all" resolves to (docs/migrations.md, "Moves"; the
command is common/migrate_moves.py).

A row moves a fixed amount, or "all": the source's whole spendable balance when it
posts. Its request hash is of the row as written ("all", never the resolved amount),
so running the plan again replays the first posting whatever the balance is by then;
the amount "all" resolved to is the posting's own amount, and the metadata keeps what
the row asked for (`move_amount`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.migration import NAME, Rejected, _whole

MOVE_COLUMNS = ("row_id", "source_wallet", "target_wallet", "amount")
ALL = "all"


@dataclass(frozen=True)
class MoveRow:
    row_id: str
    source_wallet: int
    target_wallet: int
    amount: int | None  # None: "all"

    @property
    def asked(self) -> str:
        return ALL if self.amount is None else str(self.amount)

    def request_hash(self) -> str:
        content = ["migration_transfer", self.source_wallet, self.target_wallet, self.asked]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()

    def source(self) -> dict[str, str]:
        return {
            "row_id": self.row_id,
            "source_wallet": str(self.source_wallet),
            "target_wallet": str(self.target_wallet),
            "amount": self.asked,
        }


@dataclass(frozen=True)
class WalletFacts:
    asset: str
    model: str
    kind: str
    status: str
    spendable: int  # the balance less credit in lots already due (the expiry job's)


def parse_move(raw: dict[str, Any]) -> MoveRow | Rejected:
    row_id = str(raw.get("row_id") or "")
    if not NAME.match(row_id):
        return Rejected(raw, "row_id is 1 to 64 letters, digits, '_', '.' or '-'")
    source, target = _whole(raw.get("source_wallet")), _whole(raw.get("target_wallet"))
    if source is None or target is None or source <= 0 or target <= 0:
        return Rejected(raw, "source_wallet and target_wallet are wallet ids")
    if source == target:
        return Rejected(raw, "source_wallet and target_wallet are two different wallets")
    asked = raw.get("amount")
    if isinstance(asked, str) and asked.strip().lower() == ALL:
        return MoveRow(row_id, source, target, None)
    amount = _whole(asked)
    if amount is None or amount <= 0:
        return Rejected(raw, 'amount is a positive whole number of minor units, or "all"')
    return MoveRow(row_id, source, target, amount)


def unfit(row: MoveRow, wallets: dict[int, WalletFacts]) -> str | None:
    """Why the ledger would refuse the move whatever the balances (the pre-flight), or None."""
    for side, wallet_id in (("source", row.source_wallet), ("target", row.target_wallet)):
        facts = wallets.get(wallet_id)
        if facts is None:
            return f"{side} wallet {wallet_id} does not exist"
        if facts.kind != "customer":
            return f"{side} wallet {wallet_id} is a system account"
        if facts.status != "active":
            return f"{side} wallet {wallet_id} is {facts.status}"
    if wallets[row.source_wallet].asset != wallets[row.target_wallet].asset:
        return "source and target wallets hold different assets"
    return None


def models(row: MoveRow, wallets: dict[int, WalletFacts]) -> str:
    """The report's 'model' of a move: source model -> target model."""
    return f"{wallets[row.source_wallet].model}->{wallets[row.target_wallet].model}"


def resolve(rows: Iterable[MoveRow], spendable: dict[int, int]) -> list[tuple[MoveRow, int]]:
    """Each row with the amount it moves, in order: "all" is what its source can spend
    after the rows before it (in the same batch) moved money out of or into it. A row
    with nothing to move gets 0 (it posts nothing)."""
    left = dict(spendable)
    resolved: list[tuple[MoveRow, int]] = []
    for row in rows:
        amount = max(left.get(row.source_wallet, 0), 0) if row.amount is None else row.amount
        left[row.source_wallet] = left.get(row.source_wallet, 0) - amount
        left[row.target_wallet] = left.get(row.target_wallet, 0) + amount
        resolved.append((row, amount))
    return resolved


def rejected_moves_csv(rejected: Iterable[Rejected]) -> str:
    """The rejected rows in the plan's columns, with their reason: fix and move again."""
    out = io.StringIO()
    writer = csv.DictWriter(out, [*MOVE_COLUMNS, "reason"], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rejected:
        writer.writerow({**{k: row.source.get(k, "") for k in MOVE_COLUMNS}, "reason": row.reason})
    return out.getvalue()
