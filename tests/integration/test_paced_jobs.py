"""Paced background jobs against the real test stack (docs/background-jobs.md): the
load signal sees live sessions and lock waits as each job's own login, and pacing
changes no outcome: under a load that keeps changing, every due lot still expires,
every transaction reaches the ERP exactly once, every pending event is published, and
the money invariants (checked after every test here) hold."""

import threading
from itertools import cycle

import pytest

from common import bootstrap
from common.adapters.load_signal import LoadSignal
from common.pacing import Load, Pacer, PacingSettings
from tests.e2e.test_erp_export import Books, every_action, settled
from tests.integration.test_lots import backdate_lots, later, new_wallet_for, top_up
from tests.support import exporter_pool, login_pool, sql


class Recorder:
    """A pacer's sleep that only records: the rests are asserted, not waited out."""

    def __init__(self):
        self.rests = []

    def __call__(self, seconds):
        self.rests.append(seconds)


def changing_load_pacer():
    """Adaptive pacing read after every batch from a load that goes busy, quiet, lock
    waits, quiet, over and over: the duty moves all the time."""
    loads = cycle([Load(20, 0), Load(0, 0), Load(1, 3), Load(0, 0), Load(0, 0)])
    recorder = Recorder()
    pacer = Pacer(PacingSettings(cap=0.5, floor=0.05, probe_every_s=0.0), signal=lambda: next(loads), sleep=recorder)
    return pacer, recorder


@pytest.mark.parametrize("login", ["exporter", "relay", "jobs", "reconciler"])
def test_the_load_signal_sees_a_lock_wait_and_the_sessions_in_it_as_each_jobs_login(stack, login):
    """Two sessions hold a transaction open, one waiting on the other's row lock: any
    login reads that from pg_locks without extra privileges (pg_stat_activity would hide
    another login's state)."""
    signal = LoadSignal(login_pool(stack, *stack.login(login)), attempts=1)
    quiet = signal()
    assert quiet is not None
    owner = stack.owner_dsn()
    import pg8000.native

    holder, waiter = pg8000.native.Connection(**owner), pg8000.native.Connection(**owner)
    wallet_id = sql(stack, "SELECT min(id) FROM ledger.wallets")[0][0]
    try:
        holder.run("BEGIN")
        holder.run("SELECT 1 FROM ledger.wallets WHERE id = :w FOR UPDATE", w=wallet_id)
        waiter.run("SET lock_timeout = '10s'")
        blocked = threading.Thread(
            target=lambda: waiter.run("SELECT 1 FROM ledger.wallets WHERE id = :w FOR UPDATE", w=wallet_id)
        )
        blocked.start()
        busy = None
        for _ in range(100):
            busy = signal()
            if busy is not None and busy.lock_waits:
                break
            threading.Event().wait(0.05)
        assert busy is not None and busy.lock_waits >= 1 and busy.in_transaction >= 2
        holder.run("ROLLBACK")
        blocked.join(10)
        assert not blocked.is_alive()
    finally:
        holder.close()
        waiter.close()
    after = signal()
    assert after is not None and after.lock_waits == 0


def test_paced_lot_expiry_still_expires_every_due_lot_once(stack):
    service = bootstrap.service()
    wallets = []
    for _ in range(7):
        wallet_id = new_wallet_for(service)
        top_up(service, wallet_id, 30, later(days=1))
        top_up(service, wallet_id, 5)
        backdate_lots(stack, wallet_id)
        wallets.append(wallet_id)
    pacer, recorder = changing_load_pacer()
    result = service.expire_lots(batch=2, pacer=pacer)
    assert result["failed"] == 0 and result["busy"] == 0 and result["expired"] >= 7
    assert pacer.busy_readings and pacer.batches >= 4 and len(recorder.rests) == pacer.batches
    expired = sql(
        stack,
        "SELECT wallet_id, count(*), sum(amount) FROM ledger.transactions"
        " WHERE action = 'expiry' AND wallet_id = ANY(CAST(:w AS bigint[])) GROUP BY wallet_id",
        w=wallets,
    )
    assert sorted(expired) == sorted([[w, 1, 30] for w in wallets])
    assert service.expire_lots(pacer=pacer)["expired"] == 0


def test_a_paced_export_delivers_every_transaction_exactly_once(stack):
    """Two streams over the same transactions, one paced under a changing load and one
    unpaced, in batches of 3: the ERP books the same lines for each transaction."""
    paced_books, unpaced_books = Books(stack), Books(stack)
    ids = settled(stack, every_action(stack) + every_action(stack))
    pacer, recorder = changing_load_pacer()
    paced = paced_books.exporter(pacer=lambda: pacer)
    for _ in range(50):
        if paced.run_pass().caught_up:
            break
    assert unpaced_books.exporter().run_pass().caught_up
    assert pacer.busy_readings and recorder.rests and max(recorder.rests) > min(recorder.rests)

    def booked(books, transaction_id):
        return sorted((line["account"], line["debit"], line["credit"]) for line in books.lines_of(transaction_id))

    for transaction_id in ids:
        lines = booked(paced_books, transaction_id)
        assert len(lines) == 2 and lines == booked(unpaced_books, transaction_id), transaction_id


def test_a_paced_sweep_publishes_every_pending_event(stack):
    ids = every_action(stack, settle=False)
    these = "transaction_id = ANY(CAST(:ids AS bigint[]))"
    sql(stack, f"UPDATE ledger.outbox SET published_at = NULL WHERE {these}", ids=ids)
    pacer, _ = changing_load_pacer()
    result = bootstrap.relay().sweep_all(pacer=pacer)
    assert not result.another_sweep and result.failed == 0 and result.published >= len(ids)
    pending = sql(stack, f"SELECT count(*) FROM ledger.outbox WHERE published_at IS NULL AND {these}", ids=ids)[0][0]
    assert pending == 0


def test_a_second_sweep_while_one_runs_leaves_the_backlog_to_it(stack):
    """Two sweeps at once would read the same oldest events and publish each twice."""
    outbox = bootstrap.outbox()
    with outbox.sweeping() as first:
        assert first
        result = bootstrap.relay().sweep_all()
        assert result.another_sweep and result.published == 0
    assert not bootstrap.relay().sweep_all().another_sweep


def test_the_exporters_login_reads_the_signal_through_its_pool(stack):
    """What bootstrap.pacer() builds in the functions: the pool of the job's own login."""
    assert isinstance(LoadSignal(exporter_pool(stack))(), Load)
