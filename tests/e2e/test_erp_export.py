"""The ERP export against real Postgres, the Pub/Sub emulator (push subscriptions into the
local functions) and the local ERP receiver.

Tests that drive an export pass in-process use an export stream and ERP books of their
own (erp.open_stream, /books/NAME), so what they count is theirs alone; the tick test
goes through the deployed path: Cloud Scheduler's topic, a push subscription and the
erp_export function."""

import json
import os
import subprocess
import sys
import urllib.request
import uuid

import pytest

from common import bootstrap
from common.adapters.erp_http import ErpClient
from common.adapters.erp_store import ErpStore
from common.config import get_settings
from common.erp_export import DeliveryFailed, ErpExport
from common.ledger import commands
from emulators.stack import ERP_TOKEN, REPO, wait_for
from tests.support import CALLER, assert_invariants, exporter_pool, key, login_pool, new_wallet, sql


def erp_url(stack, book=None):
    base = f"http://127.0.0.1:{stack.ports['erp']}"
    return f"{base}/books/{book}" if book else base


def erp(stack, book, path, body=None):
    request = urllib.request.Request(
        erp_url(stack, book) + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Books:
    """An export stream starting at the ledger's tail, and ERP books of its own."""

    def __init__(self, stack):
        self.stack = stack
        self.name = f"t{uuid.uuid4().hex[:10]}"
        self.store = ErpStore(exporter_pool(stack))
        self.store.open_stream(self.name)
        self.client = ErpClient(erp_url(stack, self.name), ERP_TOKEN, 10)

    def exporter(self, client=None, **options):
        options = {"batch_events": 3, "retry_base_s": 0, **options}
        return ErpExport(self.store, lambda: client or self.client, bootstrap.chart(), stream=self.name, **options)

    def erp(self, path, body=None):
        return erp(self.stack, self.name, path, body)

    def lines_of(self, transaction_id):
        return self.erp(f"/lines?transaction_id={transaction_id}")["lines"]

    def ops(self, *args):
        env = {
            **os.environ,
            **self.stack.operator_env(),  # as make ops runs it: the operator's login, not the owner
            "LEDGER_ERP_STREAM": self.name,
            "LEDGER_ERP_URL": erp_url(self.stack, self.name),
            "PYTHONPATH": str(REPO),
        }
        return subprocess.run(
            [sys.executable, "-m", "common.ops", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def books(stack):
    return Books(stack)


def settled(stack, ids, budget_s=30):
    """Wait until every one of these transactions is below the export horizon: a pass
    reads only what database transactions older than every running one created, and a
    relay marking events in the background may briefly hold the horizon back."""
    wait_for(
        lambda: sql(
            stack,
            "SELECT bool_and(created_xact < pg_snapshot_xmin(pg_current_snapshot()))"
            " FROM ledger.transactions WHERE id = ANY(CAST(:ids AS bigint[]))",
            ids=ids,
        )[0][0],
        "the export horizon to pass these transactions",
        budget_s,
    )
    return ids


def every_action(stack, settle=True):
    """One of each balance action; returns the ids of the transactions they posted, once
    the export can see them (unless `settle` is off)."""
    service = bootstrap.service()
    alice, bob = new_wallet(stack), new_wallet(stack)
    topped = service.top_up(
        CALLER, commands.TopUp(wallet_id=alice, asset="TST", amount=500, external_ref=key("pay")), key()
    )
    ids = [topped.body["transaction"]["id"]]
    ids.append(
        service.bonus(CALLER, commands.Bonus(wallet_id=alice, asset="TST", amount=50), key()).body["transaction"]["id"]
    )
    used = service.usage(
        CALLER, commands.Usage(wallet_id=alice, asset="TST", amount=70, usage_id=key("u"), product="gpu"), key()
    )
    ids.append(used.body["transaction"]["id"])
    moved = service.transfer(
        CALLER, commands.Transfer(from_wallet_id=alice, to_wallet_id=bob, asset="TST", amount=30), key()
    )
    ids.append(moved.body["transaction"]["id"])
    voided = service.void(CALLER, commands.Void(transaction_id=ids[2]), key())
    ids.append(voided.body["transaction"]["id"])
    return settled(stack, ids) if settle else ids


def test_every_action_reaches_the_erp_as_balanced_lines_once(stack, books):
    ids = every_action(stack)
    report = books.exporter().run_pass()
    assert report.caught_up and report.events == len(ids) and report.delivered == report.batches == 2
    for transaction_id in ids:
        lines = books.lines_of(transaction_id)
        assert len(lines) == 2 and sum(line["debit"] for line in lines) == sum(line["credit"] for line in lines)
        # every line names who posted its transaction
        assert {(line["actor"], line["actor_role"]) for line in lines} == {("tests", "tests")}
    usage, void = books.lines_of(ids[2]), books.lines_of(ids[4])
    assert [(u["account"], u["debit"], u["credit"]) for u in usage] == [
        (v["account"], v["credit"], v["debit"]) for v in void
    ]  # the void is the exact reverse
    for batch in books.erp("/batches")["batches"]:
        assert all(sums["debit"] == sums["credit"] for sums in batch["totals"].values())


def test_duplicate_ticks_through_the_push_subscription_give_one_line_per_leg(stack):
    """The deployed path: ticks on the scheduler topic, pushed into erp_export. Pub/Sub
    delivers at least once, so the tick comes twice; each pass reads the ledger from
    the export cursor, and the second finds nothing new."""
    # Catch the main stream up with what earlier tests posted (the bench smoke test
    # alone posts tens of thousands), so the ticked passes below have only this to do.
    main = ErpExport(
        ErpStore(exporter_pool(stack)), lambda: ErpClient(erp_url(stack), ERP_TOKEN, 10), bootstrap.chart()
    )
    while not main.run_pass().caught_up:
        pass
    ids = every_action(stack)
    log = stack.state_dir / "erp_export.log"

    def passes():
        return log.read_text().count('"ERP export pass"') if log.exists() else 0

    before = passes()
    topic = get_settings().erp_export_tick_topic
    stack.publish(topic)
    stack.publish(topic)
    wait_for(lambda: passes() >= before + 2, "two export passes", 120)
    for transaction_id in ids:
        assert len(erp(stack, None, f"/lines?transaction_id={transaction_id}")["lines"]) == 2


def test_with_the_erp_failing_batches_are_retried_and_delivered_once(stack, books):
    ids = every_action(stack) + every_action(stack)
    books.erp("/control", {"fail_next": 2, "status": 503})
    export = books.exporter()
    first = export.run_pass()
    assert first.erp_down and first.delivered == 0 and first.batches == 4  # recorded all the same
    assert export.run_pass().erp_down  # the retry meets the second failure
    third = export.run_pass()
    assert not third.erp_down and third.delivered == 4
    assert all(len(books.lines_of(i)) == 2 for i in ids)
    stats = books.erp("/stats")
    assert (stats["booked"], stats["failed"], stats["duplicates"], stats["lines"]) == (4, 2, 0, 2 * len(ids))
    assert books.store.status_counts(books.name) == {"delivered": 4}


def test_a_batch_sent_again_after_a_lost_acknowledgement_is_not_booked_twice(stack, books):
    """The function dies (or the answer is lost) after the ERP booked the batch: the
    batch goes again with the same id, and the ERP drops the copy."""

    class LostAcknowledgement:
        def deliver(self, batch_id, body):
            books.client.deliver(batch_id, body)
            raise DeliveryFailed("the connection dropped before the answer")

    ids = every_action(stack)
    assert books.exporter(LostAcknowledgement(), batch_events=10).run_pass().failed == 1
    report = books.exporter(batch_events=10).run_pass()
    assert report.retried == 1 and report.delivered == 1
    assert books.erp("/stats")["duplicates"] == 1
    assert all(len(books.lines_of(i)) == 2 for i in ids)


def test_a_batch_that_keeps_failing_is_parked_and_an_operator_replays_it(stack, books):
    every_action(stack)
    books.erp("/control", {"fail_next": 100})
    export = books.exporter(batch_events=10, park_after=2)
    export.run_pass()
    assert export.run_pass().parked
    parked = json.loads(books.ops("parked").stdout)
    assert len(parked) == 1 and parked[0]["attempts"] == 2 and "503" in parked[0]["last_error"]
    books.erp("/control", {"fail_next": 0})
    replayed = books.ops("replay", parked[0]["id"])
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert books.store.status_counts(books.name) == {"delivered": 1}
    assert books.ops("replay", parked[0]["id"]).returncode != 0  # no longer parked


def test_reconciliation_is_clean_after_every_action_and_names_a_dropped_batch(stack, books):
    every_action(stack)
    every_action(stack)
    books.exporter().run_pass()
    clean = books.ops("reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["differences"] == []

    books.erp("/control", {"drop_next": 1})  # the ERP answers 201 and loses the batch
    every_action(stack)
    assert books.exporter().run_pass().delivered == 2
    off = books.ops("reconcile")
    assert off.returncode == 1
    report = json.loads(off.stdout)
    assert not report["ok"] and report["differences"]
    assert all(
        d["ledger_debit"] >= d["erp_debit"] and d["ledger_credit"] >= d["erp_credit"] for d in report["differences"]
    )


def test_each_delivered_batch_is_summed_once_and_the_running_totals_equal_a_fresh_scan(stack, books):
    """The ERP reconciliation's ledger side is running totals: a run sums only the batches
    delivered since the last one, runs at once sum each batch once, and the totals equal
    the sums of a scan of every delivered batch (`reconcile --full`)."""
    from concurrent.futures import ThreadPoolExecutor

    from common.erp_export import reconcile, sum_delivered

    for _ in range(3):
        every_action(stack)
    assert books.exporter(batch_events=1).run_pass().delivered >= 15  # a batch per transaction
    delivered = books.store.status_counts(books.name)["delivered"]
    assert books.store.unsummed_count(books.name) == delivered
    assert books.store.fold_delivered(books.name, batches=2) == 2  # a step sums at most this many
    # four runs at once, a batch a step: they contend for every batch
    with ThreadPoolExecutor(4) as pool:
        summed = list(pool.map(lambda _: sum_delivered(books.store, books.name, batches_per_step=1), range(4)))
    assert sum(summed) == delivered - 2 and books.store.unsummed_count(books.name) == 0
    assert sum_delivered(books.store, books.name) == 0  # nothing new: a run costs nothing
    rows, count, ids = books.store.running_totals(books.name, with_ids=True)
    assert count == delivered and len(ids) == delivered and rows
    assert books.store.running_totals(books.name)[1:] == (delivered, None)

    every_action(stack)  # delivered after the totals were last added to
    books.exporter().run_pass()
    report = reconcile(books.store, books.client, books.name, full=True)
    assert report["ok"] and report["totals_match"] and report["differences"] == [], report
    assert books.store.unsummed_count(books.name) == 0
    full = books.ops("reconcile", "--full")
    assert full.returncode == 0, full.stdout + full.stderr
    assert json.loads(full.stdout)["totals_match"] is True


def test_the_databases_migration_actions_are_the_exports(stack):
    """The running totals leave out what erp.migration_actions() names, the export's
    mapper what MIGRATION_ACTIONS names: one list."""
    from common.erp.mapping import MIGRATION_ACTIONS

    assert sql(stack, "SELECT erp.migration_actions()")[0][0] == list(MIGRATION_ACTIONS)


def test_a_run_out_of_budget_keeps_what_it_summed_and_the_next_run_goes_on(stack, books):
    from common.erp_export import StillSumming, reconcile

    for _ in range(2):
        every_action(stack)
    books.exporter().run_pass()
    delivered = books.store.status_counts(books.name)["delivered"]
    assert delivered > 2
    with pytest.raises(StillSumming):
        reconcile(books.store, books.client, books.name, budget_s=0, batches_per_step=1)
    assert 0 < books.store.unsummed_count(books.name) < delivered
    report = reconcile(books.store, books.client, books.name, full=True)
    assert report["ok"] and report["totals_match"], report


def test_running_totals_that_disagree_with_a_fresh_scan_fail_the_full_reconciliation(stack, books):
    """What `--full` is for: running totals changed behind the function's back."""
    from tests.support import owner

    every_action(stack)
    books.exporter().run_pass()
    assert books.ops("reconcile").returncode == 0
    con = owner(stack)
    try:
        con.run(
            "UPDATE erp.reconciled_sums SET debit = debit + 1 WHERE stream = :s AND kind = 'customer'", s=books.name
        )
    finally:
        con.close()
    assert books.ops("reconcile").returncode == 1  # the ERP disagrees with the totals now
    full = books.ops("reconcile", "--full")
    assert full.returncode == 1
    report = json.loads(full.stdout)
    assert report["totals_match"] is False and report["totals_mismatches"]


def test_the_export_waits_for_a_transaction_still_in_progress(stack, books):
    """A posting whose database transaction is still open has an id but is invisible;
    the export must not move its cursor past it, or it would never be sent."""
    from tests.support import owner, system_account

    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    con = owner(stack)
    try:
        con.run("BEGIN")
        slow = con.run(
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'topup', 'TST', 5, :w, NULL,"
            " CAST(:legs AS bigint[]), '{-5,5}')",
            k=key(),
            w=wallet,
            legs=f"{{{funding},{wallet}}}",
        )[0][0]
        later = every_action(stack, settle=False)  # commit while the first is still open
        assert books.exporter().run_pass().events == 0  # all of them wait behind the open one
        con.run("COMMIT")
    finally:
        con.close()
    report = books.exporter().run_pass()
    assert report.events == 1 + len(later)
    assert len(books.lines_of(slow)) == 2 and all(len(books.lines_of(i)) == 2 for i in later)
    assert_invariants(stack)


def test_two_export_streams_over_the_same_transactions_have_their_own_batches(stack):
    first, second = Books(stack), Books(stack)
    ids = every_action(stack)
    assert first.exporter().run_pass().delivered == 2
    assert second.exporter().run_pass().delivered == 2
    ours = {b["batch_id"] for b in first.erp("/batches")["batches"]}
    theirs = {b["batch_id"] for b in second.erp("/batches")["batches"]}
    assert ours and theirs and not ours & theirs
    assert all(len(first.lines_of(i)) == 2 and len(second.lines_of(i)) == 2 for i in ids)


@pytest.mark.parametrize("login", ["poster", "wallet_admin", "relay", "jobs", "access_admin"])
def test_the_http_functions_role_cannot_move_the_export(stack, login):
    """Only the export's own role (and the operator's, which has it) records batches and
    moves the cursor."""
    from pg8000.exceptions import DatabaseError

    store = ErpStore(login_pool(stack, *stack.login(login)))
    with pytest.raises(DatabaseError) as error:
        store.record_batch("erp", "erp-forged", ("0", 0), ("99999999", 1), "v", 1, 2, {})
    assert error.value.args[0]["C"] == "42501"  # insufficient privilege
    with pytest.raises(DatabaseError):
        store.open_stream("forged")
    # the operator reads the export's state (make ops status)
    assert ErpStore(login_pool(stack, *stack.login("operator"))).status_counts("erp") is not None


def test_migrations_excluded_from_the_erp_never_reach_it_and_the_cursor_moves_past_them(stack):
    """LEDGER_ERP_EXCLUDE_MIGRATIONS (bootstrap.chart()): an opening balance, a move and
    the move's void give no lines; the top-up beside them does; a stream that includes
    migrations gets them all; the excluding stream still reconciles."""
    from tests.support import system_account

    excluded, included = Books(stack), Books(stack)
    wallet, other = new_wallet(stack), new_wallet(stack)
    funding, migration = system_account(stack, "TST", "funding"), system_account(stack, "TST", "migration")
    prefix = f"migration:{uuid.uuid4().hex[:12]}"

    def post(idempotency_key, action, wallet_id, counterparty, legs, voids=None):
        return sql(
            stack,
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', :act, 'TST', :a, :w, :c,"
            " CAST(:legs AS bigint[]), CAST(:amts AS bigint[]), p_voids_transaction_id => :v)",
            k=idempotency_key,
            act=action,
            a=abs(legs[0][1]),
            w=wallet_id,
            c=counterparty,
            legs=[leg for leg, _ in legs],
            amts=[amount for _, amount in legs],
            v=voids,
        )[0][0]

    opening = post(f"{prefix}:1", "opening_balance", wallet, None, [(migration, -50), (wallet, 50)])
    moved = post(f"{prefix}:2", "migration_transfer", wallet, other, [(wallet, -20), (other, 20)])
    voided = post(f"{prefix}:void:{moved}", "void", wallet, other, [(wallet, 20), (other, -20)], voids=moved)
    topped = post(key(), "topup", wallet, None, [(funding, -9), (wallet, 9)])
    settled(stack, [opening, moved, voided, topped])
    chart = bootstrap.chart().excluding_migrations()

    report = ErpExport(excluded.store, lambda: excluded.client, chart, stream=excluded.name, retry_base_s=0).run_pass()

    assert report.caught_up and report.events == 4 and report.delivered == 1
    assert [len(excluded.lines_of(i)) for i in (opening, moved, voided, topped)] == [0, 0, 0, 2]
    assert included.exporter().run_pass().caught_up
    assert [len(included.lines_of(i)) for i in (opening, moved, voided, topped)] == [2, 2, 2, 2]
    clean = excluded.ops("reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    only_migrations = post(f"{prefix}:3", "opening_balance", other, None, [(migration, -4), (other, 4)])
    settled(stack, [only_migrations])
    report = ErpExport(excluded.store, lambda: excluded.client, chart, stream=excluded.name, retry_base_s=0).run_pass()
    assert report.caught_up and report.events == 1 and report.delivered == 1 and report.failed == 0


@pytest.mark.grows_ledger
def test_the_operators_catch_up_exports_a_backlog_in_passes_until_caught_up(stack, books):
    """`python -m common.ops export --until-caught-up`, paced as the scheduled pass is:
    passes of a small budget back to back until one finds nothing left."""
    ids = every_action(stack)
    done = books.ops("export", "--until-caught-up")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["caught_up"] and report["events_all_passes"] >= len(ids) and report["pacing"]["batches"] >= 1
    for transaction_id in ids:
        assert len(books.lines_of(transaction_id)) == 2


def test_the_erp_reconciliation_bench_runs_clean(stack):
    """`python -m bench.erp_reconcile` in a small run: every run clean, each delivered
    batch counted; its seconds are not looked at."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.erp_reconcile", "--count", "2500", "--tail", "1200", "--profile", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith(("| first", "| next", "| full"))]
    first, quiet, after_tail, full = (int(row[2].replace(",", "")) for row in rows)
    # batches of 1,000 (anything else posted meanwhile joins them): the tail's are new
    assert first >= 3 and quiet == first and after_tail >= first + 2 and full == after_tail
