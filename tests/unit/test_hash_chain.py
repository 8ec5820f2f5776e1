"""The hash chain's canonical form and its verify, over an in-memory ledger (the
database's side: tests/integration/test_hash_chain.py)."""

from __future__ import annotations

import pytest

from common.hash_chain import (
    EXTEND_BATCH,
    GENESIS,
    Head,
    Key,
    Lag,
    Link,
    LinkedRow,
    canonical_text,
    extend,
    field,
    next_chain_hash,
    parse_head,
    row_hash,
    verify,
)


def transaction(transaction_id: int, xact: int, amount: int = 5) -> tuple[tuple, list[tuple]]:
    fields = (str(transaction_id), str(xact), "", "k", "h", "topup", "TST", str(amount), "7", None)
    entries = [
        (str(transaction_id * 10), str(transaction_id), "1", "TST", str(-amount), None),
        (str(transaction_id * 10 + 1), str(transaction_id), "7", "TST", str(amount), str(amount)),
    ]
    return fields, entries


class Ledger:
    """Transactions by id and the links made of them, as ChainStore reads them."""

    def __init__(self, keys: list[Key]) -> None:
        self.rows = {tid: transaction(tid, xact) for xact, tid in keys}
        self.links: list[Link] = []
        chain = GENESIS
        for position, (xact, tid) in enumerate(sorted(keys), start=1):
            fields, entries = self.rows[tid]
            row = row_hash(fields, entries)
            chain = next_chain_hash(chain, row)
            self.links.append(Link(position, tid, xact, tuple(int(e[0]) for e in entries), row, chain))

    def head(self) -> Head | None:
        last = self.links[-1] if self.links else None
        return Head(last.position, last.transaction_id, last.chain_hash.hex()) if last else None

    def linked_rows(self, after_position: int, limit: int) -> list[LinkedRow]:
        page = [link for link in self.links if link.position > after_position][:limit]
        found = []
        for link in page:
            fields, entries = self.rows.get(link.transaction_id, (None, []))
            found.append(LinkedRow(link, fields, tuple(entries), tuple(int(e[0]) for e in entries)))
        return found

    def first_unlinked(self, after: Key, up_to: Key) -> Key | None:
        linked = {link.transaction_id for link in self.links}
        keys = sorted((int(f[1]), tid) for tid, (f, _) in self.rows.items() if tid not in linked)
        return next((k for k in keys if after < k <= up_to), None)


def test_a_value_cannot_run_into_the_next():
    assert [field(None), field(""), field("~"), field("a,b")] == ["~", "0:", "1:~", "3:a,b"]
    assert canonical_text(("1", None), [("2", "x")]) == "ledger-chain-v1\nT 1:1,~\nE 1:2,1:x"
    assert row_hash(("ab", "c"), []) != row_hash(("a", "bc"), [])


@pytest.mark.parametrize("page", [1, 2, 1000])
def test_an_untouched_chain_verifies_whatever_the_page(page):
    ledger = Ledger([(100, 1), (100, 2), (101, 4), (103, 3)])
    report = verify(ledger, page=page)
    assert report == {"ok": True, "checked": 4, "head": ledger.head().as_dict(), "problem": None}


def test_the_first_problem_in_commit_order_is_named():
    ledger = Ledger([(100, 1), (101, 2), (102, 3), (103, 4)])
    ledger.rows[3] = transaction(3, 102, amount=6)  # changed
    ledger.rows[9] = transaction(9, 101)  # inserted below the head, after 2 and before 3
    assert verify(ledger, page=1)["problem"]["transaction_id"] == 9
    del ledger.rows[9]
    assert verify(ledger)["problem"] == {
        "kind": "transaction_changed",
        "message": "transaction 3 or one of its entries changed since it was linked",
        "position": 3,
        "transaction_id": 3,
    }


def test_removed_rows_and_links_are_named():
    ledger = Ledger([(100, 1), (101, 2), (102, 3)])
    fields, entries = ledger.rows[2]
    ledger.rows[2] = (fields, entries[:1])
    assert verify(ledger)["problem"]["kind"] == "entry_removed"
    del ledger.rows[2]
    assert verify(ledger)["problem"]["kind"] == "transaction_removed"
    ledger = Ledger([(100, 1), (101, 2), (102, 3)])
    del ledger.links[1]
    assert verify(ledger)["problem"]["kind"] == "link_removed"


def test_a_recorded_head_catches_a_consistent_rewrite_and_a_cut_tail():
    original = Ledger([(100, 1), (101, 2)])
    recorded = (2, original.links[-1].chain_hash)
    assert verify(original, recorded)["ok"]
    rewritten = Ledger([(100, 1), (101, 2)])
    rewritten.rows[1] = transaction(1, 100, amount=9)
    rewritten.links = _relinked(rewritten)
    assert verify(rewritten)["ok"]
    assert verify(rewritten, recorded)["problem"]["kind"] == "head_mismatch"
    cut = Ledger([(100, 1)])
    assert verify(cut, recorded)["problem"]["kind"] == "head_missing"


def _relinked(ledger: Ledger) -> list[Link]:
    chain, links = GENESIS, []
    for link in ledger.links:
        fields, entries = ledger.rows[link.transaction_id]
        row = row_hash(fields, entries)
        chain = next_chain_hash(chain, row)
        links.append(Link(link.position, link.transaction_id, link.created_xact, link.entry_ids, row, chain))
    return links


@pytest.mark.parametrize("text", ["12", "x:" + "00" * 32, "0:" + "00" * 32, "3:abcd", "3:" + "zz" * 32])
def test_a_recorded_head_is_position_and_hash(text):
    with pytest.raises(ValueError):
        parse_head(text)
    assert parse_head("3:" + "ab" * 32) == (3, bytes.fromhex("ab" * 32))


# Extending: as many batches as the time budget allows, and the lag reported ---------


class Backlog:
    """An extender with `batches` full batches waiting, then a short one; `lag` as given."""

    def __init__(self, batches: int, lag: Lag | None = None, batch: int = EXTEND_BATCH) -> None:
        self.left, self.batch, self.calls = batches, batch, 0
        self._lag = lag or Lag(None, 0.0, False)

    def extend(self, limit: int) -> tuple[int, bool, Head | None]:
        self.calls += 1
        count = min(limit, self.batch) if self.left > 0 else 3
        self.left -= 1
        return count, False, Head(self.calls, self.calls, "00" * 32)

    def lag(self) -> Lag:
        return self._lag


def test_extending_goes_on_until_caught_up_however_long_the_backlog():
    backlog = Backlog(batches=40)
    report = extend(backlog)
    assert (report["linked"], report["caught_up"], backlog.calls) == (40 * EXTEND_BATCH + 3, True, 41)


def test_extending_stops_when_its_time_budget_runs_out():
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # each batch takes a second
        return now[0]

    backlog = Backlog(batches=1000)
    report = extend(backlog, budget_s=10.0, clock=clock)
    assert backlog.calls == 10 and report["linked"] == 10 * EXTEND_BATCH and not report["caught_up"]


def test_a_chain_caught_up_with_a_held_horizon_says_so():
    report = extend(Backlog(batches=0, lag=Lag(42, 600.0, True)))
    assert report["caught_up"] and report["held_back"]
    assert (report["next_transaction_id"], report["lag_s"]) == (42, 600.0)
