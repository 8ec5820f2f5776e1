"""System account balances: checkpoints below the horizon of finished transactions plus
the entries after it (db/schema/32_balance_checkpoints.sql). A read equals the full sum
of the entries it can see, at quiet points and while postings run; advancing is
bounded and idempotent and never passes an open transaction; only the advancing step
writes a checkpoint, and never backwards."""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from common.adapters.ledger_queries import WALLET_SELECT
from common.adapters.reconciliation import find_violations
from common.config import get_settings
from emulators.stack import REPO
from tests.support import ensure_asset, key, login_connection, new_wallet, owner, post_topup, sql, system_account

ROLES = ("funding", "revenue")


def fresh_asset(stack) -> str:
    """An asset of the test's own: its system accounts see only the test's postings."""
    return ensure_asset(stack, "CK" + uuid.uuid4().hex[:8].upper())


def topup(con, asset: str, wallet: int, funding: int, amount: int) -> None:
    post_topup(con.run, asset, wallet, funding, amount, prefix="ck")


def usage(con, asset: str, wallet: int, revenue: int, amount: int) -> None:
    con.run(
        "SELECT ledger.commit_posting(:k, 'setup', 'usage', :a, :amt, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]), NULL, :u, 'gpu')",
        k=key("ck"),
        a=asset,
        amt=amount,
        w=wallet,
        legs=[wallet, revenue],
        amts=[-amount, amount],
        u=key("u"),
    )


def full_sum(stack, wallet: int) -> int:
    return sql(stack, "SELECT coalesce(sum(amount), 0) FROM ledger.entries WHERE wallet_id = :w", w=wallet)[0][0]


def read(stack, wallet: int) -> int:
    return sql(stack, "SELECT ledger.system_balance(:w)", w=wallet)[0][0]


def catch_up(stack) -> int:
    """Advance as the outbox sweeper's role does, until a step takes nothing."""
    con = login_connection(stack, "relay")
    try:
        taken = 0
        while step := con.run("SELECT ledger.advance_balance_checkpoints(1000)")[0][0]:
            taken += step
        return taken
    finally:
        con.close()


def checkpoints(stack, wallets: list[int]) -> list[list[Any]]:
    return sql(
        stack,
        "SELECT wallet_id, horizon_xact::text, horizon_id, balance, entry_count FROM ledger.balance_checkpoints"
        " WHERE wallet_id = ANY(CAST(:w AS bigint[])) ORDER BY wallet_id",
        w=wallets,
    )


def horizon(stack) -> tuple[int, int]:
    xact, transaction_id = sql(stack, "SELECT after_xact::text, after_id FROM ledger.balance_horizon")[0]
    return int(xact), transaction_id


def ledger_with_postings(stack, count: int = 12) -> tuple[str, int, int, list[int]]:
    asset = fresh_asset(stack)
    funding, revenue = (system_account(stack, asset, role) for role in ROLES)
    wallets = [new_wallet(stack, asset) for _ in range(3)]
    con = owner(stack)
    try:
        for n in range(count):
            topup(con, asset, wallets[n % 3], funding, 100 + n)
            usage(con, asset, wallets[n % 3], revenue, 7)
    finally:
        con.close()
    return asset, funding, revenue, wallets


def test_a_checkpoint_is_the_full_sum_of_its_entries_after_advancing(stack):
    _, funding, revenue, _ = ledger_with_postings(stack)
    assert catch_up(stack) > 0
    rows = {row[0]: row for row in checkpoints(stack, [funding, revenue])}
    assert rows[funding][3] == full_sum(stack, funding) == -sum(100 + n for n in range(12))
    assert rows[revenue][3] == full_sum(stack, revenue) == 7 * 12
    assert rows[funding][4] == rows[revenue][4] == 12
    assert {(int(row[1]), row[2]) for row in rows.values()} == {horizon(stack)}
    assert read(stack, funding) == full_sum(stack, funding)
    assert not find_violations(lambda statement: sql(stack, statement))


def test_a_read_adds_the_entries_after_the_checkpoint(stack):
    asset, funding, _, wallets = ledger_with_postings(stack, count=3)
    catch_up(stack)
    checkpointed = checkpoints(stack, [funding])[0][3]
    con = owner(stack)
    try:
        topup(con, asset, wallets[0], funding, 50)
    finally:
        con.close()
    assert checkpoints(stack, [funding])[0][3] == checkpointed
    assert read(stack, funding) == checkpointed - 50 == full_sum(stack, funding)


def test_a_step_takes_at_most_its_limit_and_advancing_again_changes_nothing(stack):
    _, funding, revenue, _ = ledger_with_postings(stack, count=4)
    con = login_connection(stack, "relay")
    try:
        before = horizon(stack)
        assert con.run("SELECT ledger.advance_balance_checkpoints(2)")[0][0] == 2
        assert horizon(stack) > before
    finally:
        con.close()
    catch_up(stack)
    settled = (horizon(stack), checkpoints(stack, [funding, revenue]))
    assert catch_up(stack) == 0
    assert (horizon(stack), checkpoints(stack, [funding, revenue])) == settled


def test_the_horizon_never_passes_an_open_transaction(stack):
    """A posting still open when the checkpoints advance commits later, below postings
    that committed first; its entries are still counted, by the read at once and by the
    checkpoint once it is finished."""
    asset, funding, _, wallets = ledger_with_postings(stack, count=2)
    late, other = owner(stack), owner(stack)
    try:
        late.run("BEGIN")
        topup(late, asset, wallets[0], funding, 1000)
        late_xact = int(late.run("SELECT pg_current_xact_id()::text")[0][0])
        topup(other, asset, wallets[1], funding, 30)  # commits after the late one began
        catch_up(stack)
        assert horizon(stack)[0] < late_xact
        assert read(stack, funding) == full_sum(stack, funding)  # the late one is not visible yet
        late.run("COMMIT")
        assert read(stack, funding) == full_sum(stack, funding)
        catch_up(stack)
        assert horizon(stack)[0] >= late_xact
        assert checkpoints(stack, [funding])[0][3] == full_sum(stack, funding)
    finally:
        late.close()
        other.close()


def test_reads_equal_the_full_sum_while_postings_run(stack):
    """Posters in threads, a thread advancing in small steps, a reader comparing each
    read with a recount in the same serializable transaction; at each quiet point
    between rounds the read, the recount and the checkpoint check agree."""
    asset = fresh_asset(stack)
    funding, revenue = (system_account(stack, asset, role) for role in ROLES)
    wallets = [new_wallet(stack, asset, funded=10_000) for _ in range(8)]
    mismatches: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []

    def guarded(work):
        def run():
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - reported by the test below
                errors.append(error)

        return run

    def post(seed: int) -> None:
        rng, con = random.Random(seed), owner(stack)
        try:
            for _ in range(25):
                wallet = rng.choice(wallets)
                if rng.random() < 0.5:
                    topup(con, asset, wallet, funding, rng.randint(1, 50))
                else:
                    usage(con, asset, wallet, revenue, rng.randint(1, 20))
        finally:
            con.close()

    def advance_in_steps(done: threading.Event) -> None:
        con = login_connection(stack, "relay")
        try:
            while not done.is_set():
                con.run("SELECT ledger.advance_balance_checkpoints(3)")
        finally:
            con.close()

    def read_and_recount(done: threading.Event) -> None:
        con = owner(stack)
        try:
            while not done.is_set():
                con.run("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY")
                for account in (funding, revenue):
                    got = con.run("SELECT ledger.system_balance(:w)", w=account)[0][0]
                    recount = con.run(
                        "SELECT coalesce(sum(amount), 0) FROM ledger.entries WHERE wallet_id = :w", w=account
                    )[0][0]
                    if got != recount:
                        mismatches.append((account, got, recount))
                con.run("COMMIT")
        finally:
            con.close()

    for round_ in range(4):
        done = threading.Event()
        posters = [threading.Thread(target=guarded(lambda s=round_ * 10 + n: post(s))) for n in range(3)]
        helpers = [
            threading.Thread(target=guarded(functools.partial(advance_in_steps, done))),
            threading.Thread(target=guarded(functools.partial(read_and_recount, done))),
        ]
        for thread in posters + helpers:
            thread.start()
        for thread in posters:
            thread.join()
        done.set()
        for thread in helpers:
            thread.join()
        assert not errors, errors
        for account in (funding, revenue):
            assert read(stack, account) == full_sum(stack, account)
        assert not find_violations(lambda statement: sql(stack, statement)).get("balance_checkpoints_exact")
    assert not mismatches, mismatches[:5]
    catch_up(stack)
    assert [row[3] for row in checkpoints(stack, [funding, revenue])] == [
        full_sum(stack, funding),
        full_sum(stack, revenue),
    ]


def test_the_wallet_read_gives_the_checkpoint_plus_the_tail(stack):
    """The wallets' read takes a system account's balance from its checkpoint: a
    checkpoint nudged by hand (the guard switched off, rolled back) shows in the read,
    and the invariant check names it."""
    _, funding, _, _ = ledger_with_postings(stack, count=2)
    catch_up(stack)
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run("ALTER TABLE ledger.balance_checkpoints DISABLE TRIGGER balance_checkpoints_forward")
        con.run("UPDATE ledger.balance_checkpoints SET balance = balance + 1 WHERE wallet_id = :w", w=funding)
        shown = con.run(WALLET_SELECT + " WHERE w.id = :w", w=funding)[0][8]
        violations = find_violations(lambda statement: con.run(statement))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert shown == full_sum(stack, funding) + 1
    assert [row[0] for row in violations["balance_checkpoints_exact"]] == [funding]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.balance_horizon SET after_id = after_id - 1",
        "UPDATE ledger.balance_checkpoints SET horizon_id = horizon_id - 1 WHERE wallet_id = :w",
        "UPDATE ledger.balance_checkpoints SET balance = balance + 1 WHERE wallet_id = :w",
        "DELETE FROM ledger.balance_checkpoints WHERE wallet_id = :w",
        "DELETE FROM ledger.balance_horizon",
    ],
)
def test_checkpoints_never_move_back_even_for_the_owner(stack, statement):
    _, funding, _, _ = ledger_with_postings(stack, count=1)
    catch_up(stack)
    con = owner(stack)
    try:
        with pytest.raises(DatabaseError) as error:
            con.run(statement, w=funding) if ":w" in statement else con.run(statement)
    finally:
        con.close()
    assert error.value.args[0]["M"] in ("horizon_backwards", "checkpoint_backwards", "append_only")


@pytest.mark.parametrize("login", ["relay", "wallet_admin", "poster", "operator"])
def test_no_function_role_writes_a_checkpoint(stack, login):
    con = login_connection(stack, login)
    try:
        with pytest.raises(DatabaseError) as error:
            con.run("UPDATE ledger.balance_checkpoints SET balance = 0")
    finally:
        con.close()
    assert error.value.args[0]["C"] == "42501"


def test_an_entry_outside_its_transactions_commit_order_is_refused(stack):
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run(
            "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id)"
            " VALUES (:k, 'h', 'topup', 'TST', 5, :w)",
            k=key(),
            w=wallet,
        )
        with pytest.raises(DatabaseError) as error:
            con.run(
                "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount, balance_after,"
                " created_xact) VALUES (currval('ledger.transactions_id_seq'), :f, 'TST', -5, NULL, '3'),"
                " (currval('ledger.transactions_id_seq'), :w, 'TST', 5, 5, '3')",
                f=funding,
                w=wallet,
            )
        con.run("ROLLBACK")
    finally:
        con.close()
    assert error.value.args[0]["M"] == "entry_commit_order"


def test_the_operators_command_advances_the_checkpoints(stack):
    ledger_with_postings(stack, count=2)
    env = {**os.environ, **stack.operator_env()}
    result = subprocess.run(
        [sys.executable, "-m", "common.ops", "checkpoints"], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["caught_up"] and report["horizon"]["transaction_id"] == horizon(stack)[1]
    assert report["horizon"]["transaction_id"] == sql(stack, "SELECT max(id) FROM ledger.transactions")[0][0]


def test_the_outbox_sweepers_tick_advances_the_checkpoints(stack):
    """What advances them in production: the sweeper function, on Cloud Scheduler's tick."""
    _, funding, _, _ = ledger_with_postings(stack, count=2)
    stack.publish(get_settings().outbox_sweep_tick_topic)  # one tick: Pub/Sub retries its push until it is done
    deadline = time.monotonic() + 90
    while [row[3] for row in checkpoints(stack, [funding])] != [full_sum(stack, funding)]:
        assert time.monotonic() < deadline, "the sweeper's tick did not advance the checkpoints"
        time.sleep(1)


def test_a_read_reaches_the_tail_through_the_system_entries_index(stack):
    """The tail is one range of entries_system_after_horizon, as ledger.system_balance()
    reads it (the test's ledger is small enough for a sequential scan to win, so that is
    switched off for the plan)."""
    _, funding, _, _ = ledger_with_postings(stack, count=2)
    con = owner(stack)
    try:
        con.run("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in con.run(
                "EXPLAIN SELECT sum(e.amount) FROM ledger.entries e"
                " WHERE e.wallet_id = :w AND e.balance_after IS NULL"
                " AND (e.created_xact, e.transaction_id) > (SELECT after_xact, after_id FROM ledger.balance_horizon)",
                w=funding,
            )
        )
    finally:
        con.close()
    assert "Index Only Scan using entries_system_after_horizon" in plan, plan
    assert "Index Cond: ((wallet_id = " in plan and "ROW(created_xact, transaction_id) > ROW(" in plan, plan


@pytest.mark.grows_ledger
def test_the_balance_read_bench_runs_and_both_reads_agree(stack):
    """`python -m bench.system_balance` in a small run: it fails when the full sum and
    the checkpointed read ever disagree; its figures are not looked at."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.system_balance", "--profile", "test", "--count", "400", "--tail", "40",
         "--reads", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| checkpoint + tail | 40 behind |" in result.stdout


def test_a_system_account_may_hold_more_than_a_bigint(stack):
    """A funding account pays out what many customers' balances hold together: its sum
    may pass bigint's range, as sum(bigint) allows, and the checkpoint keeps it exactly."""
    asset = fresh_asset(stack)
    funding = system_account(stack, asset, "funding")
    wallets = [new_wallet(stack, asset) for _ in range(2)]
    con = owner(stack)
    try:
        for wallet in wallets:
            topup(con, asset, wallet, funding, 5 * 10**18)
    finally:
        con.close()
    catch_up(stack)
    assert checkpoints(stack, [funding])[0][3] == full_sum(stack, funding) == -(10**19)
    assert read(stack, funding) == -(10**19)
    assert not find_violations(lambda statement: sql(stack, statement))
