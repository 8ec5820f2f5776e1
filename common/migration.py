"""Bulk balance migrations, the rules without I/O: what a source row is, when it is
rejected, the posting it makes and the reconciliation of source against ledger
(docs/migrations.md; the command is common/migrate.py).

A row is idempotent by (migration id, row id): it posts under the key
`migration:<migration id>:<row id>` with a request hash of its content, so running a
file again posts nothing twice, and a row changed since it posted is refused by the
ledger's own idempotency check rather than posted a second time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from common.ledger.commands import CreateWallet

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a migration id, a row id: no ':' so keys never collide
COLUMNS = ("row_id", "owner", "asset", "amount", "model", "parent", "lot_expires_at")


class SourceError(ValueError):
    """The file itself can't be read as a migration source."""


@dataclass(frozen=True, slots=True)  # a million of them in memory at once
class OpeningRow:
    row_id: str
    owner: str
    asset: str
    amount: int
    model: str
    parent: int | None
    lot_expires_at: datetime | None

    def request_hash(self) -> str:
        content = [self.owner, self.asset, self.amount, self.model, self.parent, _iso(self.lot_expires_at)]
        return hashlib.sha256(json.dumps(["opening_balance", *content]).encode()).hexdigest()

    def source(self) -> dict[str, str]:
        return {
            "row_id": self.row_id,
            "owner": self.owner,
            "asset": self.asset,
            "amount": str(self.amount),
            "model": self.model,
            "parent": "" if self.parent is None else str(self.parent),
            "lot_expires_at": _iso(self.lot_expires_at) or "",
        }


@dataclass(frozen=True)
class Rejected:
    source: dict[str, Any]  # the row as read, so the operator can fix it and feed it back
    reason: str


def posting_key(migration_id: str, row_id: str) -> str:
    return f"migration:{migration_id}:{row_id}"


def void_key(migration_id: str, transaction_id: int) -> str:
    return f"migration:{migration_id}:void:{transaction_id}"


def check_migration_id(migration_id: str) -> None:
    if not NAME.match(migration_id):
        raise SourceError("a migration id is 1 to 64 letters, digits, '_', '.' or '-'")


def read_rows(text: str, name: str) -> Iterator[dict[str, Any]]:
    """The rows of a CSV (with a header) or JSONL file, as read; a row without a row_id
    gets its 1-based position."""
    if name.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise SourceError(f"line {number} is not JSON: {error}") from error
                yield {"row_id": str(number), **row} if isinstance(row, dict) else {"row_id": str(number), "row": row}
        return
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), 1):
        yield {**row, "row_id": row.get("row_id") or str(number)}


def parse_opening(raw: dict[str, Any], now: datetime) -> OpeningRow | Rejected:
    """One row, or why it is rejected. The wallet part is checked by the same command
    the wallets function takes (owner, asset, model)."""
    row_id = str(raw.get("row_id") or "")
    if not NAME.match(row_id):
        return Rejected(raw, "row_id is 1 to 64 letters, digits, '_', '.' or '-'")
    amount = _whole(raw.get("amount"))
    if amount is None or amount <= 0:
        return Rejected(raw, "amount is a positive whole number of minor units")
    parent = _whole(raw.get("parent")) if raw.get("parent") not in (None, "") else None
    if raw.get("parent") not in (None, "") and parent is None:
        return Rejected(raw, "parent is a wallet id")
    try:
        CreateWallet.model_validate(
            {"owner_id": raw.get("owner"), "asset": raw.get("asset"), "model": raw.get("model") or "personal"}
        )
    except ValidationError as error:
        return Rejected(raw, "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors()))
    expires = None
    if raw.get("lot_expires_at") not in (None, ""):
        try:
            expires = datetime.fromisoformat(str(raw["lot_expires_at"]))
        except ValueError:
            return Rejected(raw, "lot_expires_at is an ISO 8601 time")
        if expires.tzinfo is None or expires <= now:
            return Rejected(raw, "lot_expires_at is a future time with its offset")
    model = raw.get("model") or "personal"
    if model == "personal" and parent is not None:
        return Rejected(raw, "a personal wallet has no parent")
    # a million rows share a few assets and models: one string each, not one a row
    return OpeningRow(
        row_id, str(raw["owner"]), sys.intern(str(raw["asset"])), amount, sys.intern(model), parent, expires
    )


class SourceRow(Protocol):
    @property
    def row_id(self) -> str: ...

    def source(self) -> dict[str, str]: ...


Row = TypeVar("Row", bound=SourceRow)


def first_of_each_row_id(rows: Iterable[Row | Rejected]) -> tuple[list[Row], list[Rejected]]:
    """A row id repeated in the file (an opening balance's or a move's) is rejected
    after its first (the pre-flight's duplicate check): only one of them could post."""
    seen: set[str] = set()
    valid: list[Row] = []
    rejected: list[Rejected] = []
    for row in rows:
        if isinstance(row, Rejected):
            rejected.append(row)
        elif row.row_id in seen:
            rejected.append(Rejected(row.source(), f"row_id {row.row_id} appears earlier in the file"))
        else:
            seen.add(row.row_id)
            valid.append(row)
    return valid, rejected


@dataclass
class Totals:
    """Amounts and counts per (asset, model)."""

    sums: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, asset: str, model: str, amount: int) -> None:
        entry = self.sums.setdefault((asset, model), [0, 0])
        entry[0] += amount
        entry[1] += 1

    def as_list(self) -> list[dict[str, Any]]:
        return [
            {"asset": asset, "model": model, "amount": amount, "rows": rows}
            for (asset, model), (amount, rows) in sorted(self.sums.items())
        ]


def rejected_csv(rejected: Iterable[Rejected]) -> str:
    """The rejected rows with their reason, in the source's columns: fix them, drop the
    reason column or keep it (it is ignored), and import the file again."""
    out = io.StringIO()
    writer = csv.DictWriter(out, [*COLUMNS, "reason"], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rejected:
        writer.writerow({**{k: row.source.get(k, "") for k in COLUMNS}, "reason": row.reason})
    return out.getvalue()


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
        return int(value)
    return None


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None
