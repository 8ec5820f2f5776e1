"""Tamper evidence: the hash chain's canonical form, and verifying the chain against
the rows it covers (docs/tamper-evidence.md).

The database extends the chain (ledger.extend_chain() in db/schema/88_hash_chain.sql);
this module recomputes it independently: it builds each transaction's canonical text
itself, from column values read with built-in casts, so a verify never trusts a
function that the schema's owner could redefine. No I/O here: the store is passed in.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from common.pacing import Pacer, unpaced

VERSION = "ledger-chain-v1"
GENESIS = bytes(32)  # the chain hash before the first link
Fields = Sequence[str | None]
Key = tuple[int, int]  # commit order: (created_xact, transaction id)


def field(value: str | None) -> str:
    """A value as <characters>:<text>, or ~ for NULL: no value can run into the next."""
    return "~" if value is None else f"{len(value)}:{value}"


def canonical_text(transaction: Fields, entries: Iterable[Fields]) -> str:
    """The text 88_hash_chain.sql's ledger.chain_text() builds: the version, then the
    transaction's fields, then each entry's (ordered by id), one line each."""
    lines = [VERSION, "T " + ",".join(map(field, transaction))]
    lines += ["E " + ",".join(map(field, entry)) for entry in entries]
    return "\n".join(lines)


def row_hash(transaction: Fields, entries: Iterable[Fields]) -> bytes:
    return hashlib.sha256(canonical_text(transaction, entries).encode()).digest()


def next_chain_hash(previous: bytes, row: bytes) -> bytes:
    return hashlib.sha256(previous + row).digest()


@dataclass(frozen=True)
class Link:
    position: int
    transaction_id: int
    created_xact: int
    entry_ids: tuple[int, ...]
    row_hash: bytes
    chain_hash: bytes

    @property
    def key(self) -> Key:
        return (self.created_xact, self.transaction_id)


@dataclass(frozen=True)
class LinkedRow:
    """A link with what its transaction holds now: None when the transaction is gone."""

    link: Link
    transaction: Fields | None
    entries: tuple[Fields, ...]
    entry_ids: tuple[int, ...]


@dataclass(frozen=True)
class Head:
    position: int
    transaction_id: int
    hash: str  # hex

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "transaction_id": self.transaction_id, "hash": self.hash}


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    position: int | None = None
    transaction_id: int | None = None
    entry_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "kind": self.kind,
            "message": self.message,
            "position": self.position,
            "transaction_id": self.transaction_id,
        }
        if self.entry_id is not None:
            found["entry_id"] = self.entry_id
        return found


@dataclass(frozen=True)
class Lag:
    """The next transaction to link, how long it has waited, and whether it waits
    behind the horizon (an older database transaction still open)."""

    next_transaction_id: int | None
    waiting_s: float
    held_back: bool


class ChainExtender(Protocol):
    def extend(self, limit: int) -> tuple[int, bool, Head | None]: ...

    def lag(self) -> Lag: ...


class ChainReader(Protocol):
    def head(self) -> Head | None: ...

    def linked_rows(self, after_position: int, limit: int) -> list[LinkedRow]: ...

    def first_unlinked(self, after: Key, up_to: Key) -> Key | None: ...


class ChainWalk:
    """Recomputes the chain link by link, from the rows, and names what breaks it."""

    def __init__(self) -> None:
        self.position = 0
        self.chain = GENESIS
        self.last_key: Key = (0, 0)
        self.hashes: dict[int, bytes] = {}  # recomputed chain hash per position asked for

    def step(self, linked: LinkedRow, remember: int | None = None) -> Problem | None:
        link = linked.link
        if link.position != self.position + 1:
            return Problem(
                "link_removed",
                f"the chain jumps from position {self.position} to {link.position}: links were removed",
                self.position + 1,
            )
        if link.key <= self.last_key:
            return Problem("link_out_of_order", "a link out of commit order", link.position, link.transaction_id)
        if linked.transaction is None:
            return Problem(
                "transaction_removed",
                f"transaction {link.transaction_id} was linked and is gone",
                link.position,
                link.transaction_id,
            )
        row = row_hash(linked.transaction, linked.entries)
        chain = next_chain_hash(self.chain, row)
        if row != link.row_hash and chain != link.chain_hash:
            return _changed(link, linked.entry_ids)
        if chain != link.chain_hash or row != link.row_hash:
            return Problem(
                "link_changed", "the link's stored hashes were rewritten", link.position, link.transaction_id
            )
        self.position, self.chain, self.last_key = link.position, chain, link.key
        if remember == link.position:
            self.hashes[link.position] = chain
        return None


def _changed(link: Link, entry_ids: tuple[int, ...]) -> Problem:
    removed = sorted(set(link.entry_ids) - set(entry_ids))
    if removed:
        return Problem(
            "entry_removed",
            f"entry {removed[0]} of transaction {link.transaction_id} is gone",
            link.position,
            link.transaction_id,
            removed[0],
        )
    added = sorted(set(entry_ids) - set(link.entry_ids))
    if added:
        return Problem(
            "entry_added",
            f"entry {added[0]} was added to transaction {link.transaction_id}",
            link.position,
            link.transaction_id,
            added[0],
        )
    return Problem(
        "transaction_changed",
        f"transaction {link.transaction_id} or one of its entries changed since it was linked",
        link.position,
        link.transaction_id,
    )


def _inserted(key: Key) -> Problem:
    return Problem(
        "inserted_out_of_band",
        f"transaction {key[1]} lies below the chain's head in commit order and has no link:"
        " it was inserted out of band (or its link was removed)",
        transaction_id=key[1],
    )


EXTEND_BATCH = 500  # transactions a call links: each call is one short database transaction


def extend(
    extender: ChainExtender,
    batch: int = EXTEND_BATCH,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    pacer: Pacer | None = None,
) -> dict[str, Any]:
    """Link in small batches until caught up with the horizon (or `budget_s` ran out),
    each batch its own transaction, so the extenders' lock is never held for long, and
    rested for as `pacer` says.
    Another extender at work (busy) ends the run: it is linking the same rows.

    Caught up means "up to the horizon", which an old open transaction can hold still:
    the report also says how long the next unlinked transaction has waited
    (`lag_s`) and whether it waits behind the horizon (`held_back`)."""
    deadline = None if budget_s is None else clock() + budget_s
    pacer = pacer or unpaced()
    linked = 0
    while True:
        size = pacer.size(batch)  # paced, sized to a short batch
        with pacer.batch():
            count, busy, head = extender.extend(size)
        pacer.counted(count)
        linked += count
        if busy or count < size or (deadline is not None and clock() >= deadline):
            break
    lag = extender.lag()
    return {
        "linked": linked,
        "caught_up": not busy and count < size,
        "busy": busy,
        "head": head.as_dict() if head else None,
        "next_transaction_id": lag.next_transaction_id,
        "lag_s": round(lag.waiting_s, 3),
        "held_back": lag.held_back,
    }


def parse_head(text: str) -> tuple[int, bytes]:
    """POSITION:HASH, as a head recorded outside the database."""
    position, _, digest = text.partition(":")
    try:
        parsed = int(position), bytes.fromhex(digest)
    except ValueError:
        raise ValueError("expected POSITION:HASH, the hash as 64 hex digits") from None
    if parsed[0] < 1 or len(parsed[1]) != 32:
        raise ValueError("expected POSITION:HASH, a position from 1 and the hash as 64 hex digits")
    return parsed


def verify(reader: ChainReader, expect_head: tuple[int, bytes] | None = None, page: int = 1000) -> dict[str, Any]:
    """Walk every link in order and report the first problem, in commit order: a
    transaction or entry changed, a transaction removed, one inserted below the head
    without a link, a link removed or rewritten; then, if given, whether the chain
    still has the head recorded elsewhere (which a consistent rewrite can't keep)."""
    head = reader.head()
    walk = ChainWalk()
    problem = None
    after_key: Key = (0, 0)
    while problem is None:
        rows = reader.linked_rows(walk.position, page)
        if not rows:
            break
        found = None
        for linked in rows:
            found = walk.step(linked, expect_head[0] if expect_head else None)
            if found is not None:
                break
        # a link problem's place in commit order: its link's, or for a gap the last good one's
        up_to = walk.last_key if found is not None and found.kind == "link_removed" else None
        if up_to is None:
            up_to = linked.link.key
        unlinked = reader.first_unlinked(after_key, up_to)
        problem = _inserted(unlinked) if unlinked is not None else found
        after_key = up_to
    if problem is None and expect_head is not None:
        problem = _head_problem(walk, expect_head)
    return {
        "ok": problem is None,
        "checked": walk.position,
        "head": head.as_dict() if head else None,
        "problem": problem.as_dict() if problem else None,
    }


def _head_problem(walk: ChainWalk, expect_head: tuple[int, bytes]) -> Problem | None:
    position, digest = expect_head
    if position > walk.position:
        return Problem(
            "head_missing",
            f"the chain ends at position {walk.position}, before the recorded head {position}:"
            " links were removed from its end",
            position,
        )
    if walk.hashes.get(position) != digest:
        return Problem(
            "head_mismatch",
            f"the chain's hash at position {position} is not the recorded one: the chain was rewritten",
            position,
        )
    return None
