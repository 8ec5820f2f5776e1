"""The hash chain over transactions and their entries (docs/tamper-evidence.md).

The chain is extended as the functions' role (the outbox sweeper's); the tampering is
the schema owner's, with the append-only triggers switched off, inside a transaction
that verify runs in too and that is rolled back: no tampered row outlives its test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pg8000.native
import pytest

from common import bootstrap
from common.adapters.chain_store import ENTRY_FIELDS, TRANSACTION_FIELDS, ChainStore
from common.adapters.reconciliation import find_violations
from common.config import get_settings
from common.hash_chain import canonical_text, extend, verify
from tests.support import key, login_connection, new_wallet, owner, sql, system_account


def topup_of(stack, wallet_id: int) -> int:
    return sql(stack, "SELECT min(transaction_id) FROM ledger.entries WHERE wallet_id = :w", w=wallet_id)[0][0]


def link_position(stack, transaction_id: int) -> int | None:
    rows = sql(stack, "SELECT position FROM ledger.chain_links WHERE transaction_id = :t", t=transaction_id)
    return rows[0][0] if rows else None


def catch_up(store: ChainStore | None = None) -> dict[str, Any]:
    """Extend until caught up, as the sweeper does; a sweeper run by a tick published
    earlier may hold the extenders' lock for a batch (busy): go again after it."""
    for _ in range(100):
        report = extend(store or bootstrap.chain_store())
        if not report["busy"]:
            assert report["caught_up"]
            return report
        time.sleep(0.1)
    raise AssertionError("another extender held the chain for 100 tries")


@contextmanager
def tampering(stack, *tables: str) -> Iterator[pg8000.native.Connection]:
    """The owner's connection in a transaction with the tables' own triggers off; rolled back."""
    con = owner(stack)
    con.run("BEGIN")
    try:
        for table in tables:
            con.run(f"ALTER TABLE ledger.{table} DISABLE TRIGGER USER")
        yield con
    finally:
        con.run("ROLLBACK")
        con.close()


def reconciliation_sees_nothing(con: pg8000.native.Connection) -> bool:
    """After the tamperer also fitted the system accounts' balance checkpoints to the
    changed entries (derived sums, like the cached balances each test fits)."""
    con.run("ALTER TABLE ledger.balance_checkpoints DISABLE TRIGGER USER")
    con.run(
        "UPDATE ledger.balance_checkpoints c SET balance = s.total, entry_count = s.legs"
        "  FROM (SELECT e.wallet_id, sum(e.amount) AS total, count(*) AS legs"
        "          FROM ledger.entries e CROSS JOIN ledger.balance_horizon h"
        "         WHERE e.balance_after IS NULL AND (e.created_xact, e.transaction_id) <= (h.after_xact, h.after_id)"
        "         GROUP BY e.wallet_id) s"
        " WHERE s.wallet_id = c.wallet_id"
    )
    return find_violations(lambda statement: con.run(statement)) == {}


def enlarge_top_up(con: pg8000.native.Connection, transaction_id: int, wallet: int) -> None:
    """A top-up made 100 larger, consistently: its legs, its amount (so it still follows
    its rule) and the wallet's balance, so that every reconciliation check passes."""
    con.run(
        "UPDATE ledger.entries SET amount = amount + sign(amount) * 100, balance_after = balance_after + 100"
        " WHERE transaction_id = :t",
        t=transaction_id,
    )
    con.run("UPDATE ledger.transactions SET amount = amount + 100 WHERE id = :t", t=transaction_id)
    con.run("UPDATE ledger.wallets SET balance = balance + 100 WHERE id = :w", w=wallet)


@pytest.fixture
def linked(stack) -> dict[str, Any]:
    """Two fresh wallets' top-ups, linked as the sweeper links them: the chain's head after."""
    first, second = new_wallet(stack, funded=1000), new_wallet(stack, funded=500)
    report = catch_up()
    return {"first": first, "second": second, "head": report["head"]}


def test_postings_are_linked_in_commit_order_and_verify_finds_nothing(stack, linked):
    first, second = topup_of(stack, linked["first"]), topup_of(stack, linked["second"])
    assert link_position(stack, first) < link_position(stack, second)
    report = verify(bootstrap.chain_store())
    assert report["ok"] and report["problem"] is None
    assert report["checked"] == report["head"]["position"] >= linked["head"]["position"]


def test_the_outbox_sweepers_tick_extends_the_chain(stack):
    """What links transactions in production: the sweeper function, on Cloud Scheduler's tick."""
    transaction_id = topup_of(stack, new_wallet(stack, funded=10))
    stack.publish(get_settings().outbox_sweep_tick_topic)  # one tick: Pub/Sub retries its push until it is done
    deadline = time.monotonic() + 90
    while link_position(stack, transaction_id) is None:
        assert time.monotonic() < deadline, "the sweeper's tick did not link the transaction"
        time.sleep(1)
    assert verify(bootstrap.chain_store())["ok"]


def test_the_database_hashes_the_text_verify_builds(stack):
    wallet = new_wallet(stack)
    funding = system_account(stack, "TST", "funding")
    sql(
        stack,
        "SELECT ledger.commit_posting(:k, 'h', 'topup', 'TST', 70, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amounts AS bigint[]), :ref, NULL, NULL, 'ünï ~ 3:x', NULL,"
        " CAST(:metadata AS jsonb))",
        k=key("chain-text"),
        ref=key("psp,1\n2"),
        w=wallet,
        legs=[funding, wallet],
        amounts=[-70, 70],
        metadata='{"note": "a\\"b", "n": 1.50, "nested": {"z": null}}',
    )
    transaction_id = topup_of(stack, wallet)
    fields = sql(
        stack, f"SELECT {', '.join(TRANSACTION_FIELDS)} FROM ledger.transactions t WHERE t.id = :t", t=transaction_id
    )
    entries = sql(
        stack,
        f"SELECT {', '.join(ENTRY_FIELDS)} FROM ledger.entries e WHERE e.transaction_id = :t ORDER BY e.id",
        t=transaction_id,
    )
    in_database = sql(stack, "SELECT ledger.chain_text(:t)", t=transaction_id)[0][0]
    assert in_database == canonical_text(fields[0], entries)


def test_verify_names_a_transaction_whose_entry_changed(stack, linked):
    transaction_id = topup_of(stack, linked["first"])
    with tampering(stack, "entries", "transactions") as con:
        enlarge_top_up(con, transaction_id, linked["first"])
        assert reconciliation_sees_nothing(con)
        problem = verify(ChainStore(con.run))["problem"]
    assert problem["kind"] == "transaction_changed"
    assert problem["transaction_id"] == transaction_id
    assert problem["position"] == link_position(stack, transaction_id)


def test_verify_names_an_entry_removed_from_a_linked_transaction(stack, linked):
    transaction_id = topup_of(stack, linked["first"])
    removed = sql(stack, "SELECT id FROM ledger.entries WHERE wallet_id = :w", w=linked["first"])[0][0]
    with tampering(stack, "entries") as con:
        con.run("DELETE FROM ledger.entries WHERE id = :e", e=removed)
        problem = verify(ChainStore(con.run))["problem"]
    assert (problem["kind"], problem["transaction_id"], problem["entry_id"]) == (
        "entry_removed",
        transaction_id,
        removed,
    )


def test_verify_names_a_transaction_inserted_below_the_head(stack):
    wallet = new_wallet(stack, funded=1000)
    # an id handed out and never used, as by a posting that rolled back
    gap = sql(stack, "SELECT nextval(pg_get_serial_sequence('ledger.transactions', 'id'))")[0][0]
    new_wallet(stack, funded=500)
    catch_up()
    before = topup_of(stack, wallet)
    funding = system_account(stack, "TST", "funding")
    with tampering(stack, "transactions", "entries") as con:
        # in commit order between two linked top-ups: same database transaction as the first
        con.run(
            "INSERT INTO ledger.transactions (id, created_xact, idempotency_key, request_hash, action, asset_code,"
            " amount, wallet_id) OVERRIDING SYSTEM VALUE"
            " SELECT :gap, created_xact, :k, 'h', 'topup', 'TST', 700, :w FROM ledger.transactions WHERE id = :b",
            gap=gap,
            k=key("out-of-band"),
            w=wallet,
            b=before,
        )
        con.run(
            "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount, balance_after, created_xact)"
            " SELECT :gap, v.wallet_id, 'TST', v.amount, v.balance_after, t.created_xact"
            "   FROM (VALUES (CAST(:f AS bigint), -700, NULL::bigint), (:w, 700, 1700)) v (wallet_id, amount,"
            " balance_after) CROSS JOIN ledger.transactions t WHERE t.id = :gap",
            gap=gap,
            f=funding,
            w=wallet,
        )
        con.run("UPDATE ledger.wallets SET balance = 1700, entry_count = 2 WHERE id = :w", w=wallet)
        assert reconciliation_sees_nothing(con)
        problem = verify(ChainStore(con.run))["problem"]
    assert (problem["kind"], problem["transaction_id"]) == ("inserted_out_of_band", gap)


def test_verify_names_a_linked_transaction_that_was_removed(stack, linked):
    transaction_id = topup_of(stack, linked["first"])
    with tampering(stack, "transactions", "entries") as con:
        con.run("DELETE FROM ledger.outbox WHERE transaction_id = :t", t=transaction_id)
        con.run("DELETE FROM ledger.entries WHERE transaction_id = :t", t=transaction_id)
        con.run("DELETE FROM ledger.transactions WHERE id = :t", t=transaction_id)
        con.run("UPDATE ledger.wallets SET balance = 0, entry_count = 0 WHERE id = :w", w=linked["first"])
        assert reconciliation_sees_nothing(con)
        problem = verify(ChainStore(con.run))["problem"]
    assert (problem["kind"], problem["transaction_id"]) == ("transaction_removed", transaction_id)


def test_a_chain_rewritten_consistently_is_caught_only_by_the_recorded_head(stack, linked):
    head = linked["head"]
    recorded = (head["position"], bytes.fromhex(head["hash"]))
    transaction_id = topup_of(stack, linked["first"])
    with tampering(stack, "entries", "transactions", "chain_links") as con:
        enlarge_top_up(con, transaction_id, linked["first"])
        con.run("DELETE FROM ledger.chain_links")
        store = ChainStore(con.run)
        catch_up(store)
        assert verify(store)["ok"]
        problem = verify(store, recorded)["problem"]
    assert (problem["kind"], problem["position"]) == ("head_mismatch", head["position"])
    assert verify(bootstrap.chain_store(), recorded)["ok"]


def test_a_posting_in_flight_is_linked_only_once_it_ends(stack):
    in_flight = owner(stack)
    try:
        in_flight.run("BEGIN")
        wallet = in_flight.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code) VALUES (:o, 'TST') RETURNING id", o=key("owner")
        )[0][0]
        funding = system_account(stack, "TST", "funding")
        first = in_flight.run(
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'topup', 'TST', 10, :w, NULL,"
            " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]))",
            k=key("in-flight"),
            w=wallet,
            legs=[funding, wallet],
            amounts=[-10, 10],
        )[0][0]
        later = topup_of(stack, new_wallet(stack, funded=10))  # committed, created after the one in flight

        catch_up()
        assert link_position(stack, first) is None and link_position(stack, later) is None

        in_flight.run("COMMIT")
    finally:
        in_flight.close()
    catch_up()
    assert link_position(stack, first) < link_position(stack, later)
    assert verify(bootstrap.chain_store())["ok"]


def test_concurrent_extenders_never_link_twice(stack):
    catch_up()
    new_wallet(stack, funded=10), new_wallet(stack, funded=20)
    holder, other = owner(stack), owner(stack)
    try:
        other.run("SET lock_timeout = '10s'")  # without the extenders' lock it would wait on the holder's link
        holder.run("BEGIN")
        assert holder.run("SELECT linked, busy FROM ledger.extend_chain(1)") == [[1, False]]
        assert other.run("SELECT linked, busy FROM ledger.extend_chain(1000)") == [[0, True]]
        holder.run("COMMIT")
        catch_up(ChainStore(other.run))
    finally:
        holder.close()
        other.close()
    assert sql(stack, "SELECT count(*) - count(DISTINCT transaction_id) FROM ledger.chain_links") == [[0]]
    assert verify(bootstrap.chain_store())["ok"]


def test_links_are_append_only(stack, linked):
    for statement in ("UPDATE ledger.chain_links SET linked_at = now()", "DELETE FROM ledger.chain_links"):
        with pytest.raises(pg8000.native.DatabaseError, match="append_only"):
            sql(stack, statement)


def test_a_chain_held_back_by_an_open_transaction_says_so(stack):
    """Any login's open transaction holds the horizon: the chain is caught up with it,
    links nothing newer, and reports the wait instead of hiding it."""
    holder = login_connection(stack, "poster")
    try:
        holder.run("BEGIN")
        holder.run("SELECT pg_current_xact_id()")  # a transaction id, as any writer takes
        later = topup_of(stack, new_wallet(stack, funded=10))
        report = catch_up()
        assert link_position(stack, later) is None
        assert report["held_back"] and report["next_transaction_id"] is not None
        assert report["lag_s"] >= 0
    finally:
        holder.run("ROLLBACK")
        holder.close()
    report = catch_up()
    assert link_position(stack, later) is not None
    assert not report["held_back"]


@pytest.mark.parametrize("login", ["poster", "relay", "operator"])
def test_no_login_can_sit_idle_in_a_transaction_for_long(stack, login):
    """The horizon (and any lock) is held at most this long by an abandoned transaction."""
    con = login_connection(stack, login)
    try:
        assert con.run("SHOW idle_in_transaction_session_timeout") == [["2min"]]
    finally:
        con.close()
