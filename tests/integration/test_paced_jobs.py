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
from tests.support import login_pool, sql


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


def wait_for_reading(signal, done):
    for _ in range(100):
        load = signal()
        if load is not None and done(load):
            return load
        threading.Event().wait(0.05)
    return signal()


@pytest.mark.parametrize("login", ["exporter", "relay", "jobs", "reconciler"])
def test_the_load_signal_sees_other_logins_waiting_and_leaves_out_the_jobs_own(stack, login):
    """An owner's session holds a lock; a session of the job's own login waits on it,
    then another owner's session does. Any login reads that from pg_locks and
    pg_stat_activity without extra privileges; the job's own login is left out (its
    lanes or snapshot are not live traffic), the other login's wait is seen."""
    import pg8000.native

    user, password = stack.login(login)
    signal = LoadSignal(login_pool(stack, user, password), attempts=1)
    assert signal() is not None
    owner = stack.owner_dsn()
    own = {**owner, "user": user, "password": password}
    holder, own_waiter, other_waiter = (pg8000.native.Connection(**dsn) for dsn in (owner, own, owner))
    waits = []
    try:
        holder.run("SELECT pg_advisory_lock(4299, 1)")
        for waiter in (own_waiter, other_waiter):
            waiter.run("SET lock_timeout = '10s'")
        waits.append(threading.Thread(target=lambda: own_waiter.run("SELECT pg_advisory_lock(4299, 1)")))
        waits[-1].start()
        threading.Event().wait(0.5)  # the job's own login now waits
        assert signal().lock_waits == 0
        waits.append(threading.Thread(target=lambda: other_waiter.run("SELECT pg_advisory_lock(4299, 1)")))
        waits[-1].start()
        busy = wait_for_reading(signal, lambda load: load.lock_waits)
        # the holder's session lock outlives its statement, outside a transaction; the
        # other login's waiter is inside one, waiting
        assert busy.lock_waits == 1 and busy.in_transaction >= 1
    finally:
        for con, wait in zip((holder, own_waiter, other_waiter), [*waits, None, None], strict=False):
            con.close()  # a session's locks go with it: the next in line gets the lock
            if wait is not None:
                wait.join(10)
    assert wait_for_reading(signal, lambda load: not load.lock_waits).lock_waits == 0


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
    # each batch's rest is taken before the next: none after the last
    assert pacer.busy_readings and pacer.batches >= 4 and len(recorder.rests) == pacer.batches - 1
    expired = sql(
        stack,
        "SELECT wallet_id, count(*), sum(amount) FROM ledger.transactions"
        " WHERE action = 'expiry' AND wallet_id = ANY(CAST(:w AS bigint[])) GROUP BY wallet_id",
        w=wallets,
    )
    assert sorted(expired) == sorted([[w, 1, 30] for w in wallets])
    assert service.expire_lots(pacer=pacer)["expired"] == 0


def test_lot_expiry_stops_on_its_time_budget_and_the_next_run_goes_on(stack):
    service = bootstrap.service()
    wallet_id = new_wallet_for(service)
    top_up(service, wallet_id, 30, later(days=1))
    backdate_lots(stack, wallet_id)
    stopped = service.expire_lots(budget_s=0.0)
    assert stopped["stopped_on_budget"] and stopped["expired"] == 0
    finished = service.expire_lots()
    assert not finished["stopped_on_budget"] and finished["expired"] >= 1


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
    ids = every_action(stack)  # settled: the after-commit relay has marked them, and is done
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


def test_the_sweep_lock_goes_with_its_session_whatever_ends_the_sweep(stack):
    """The lock's session is closed at the end, never handed on by the pool: a sweep
    that failed leaves no lock behind for the next one to find held."""
    outbox = bootstrap.outbox()
    with pytest.raises(RuntimeError), outbox.sweeping() as alone:
        assert alone
        raise RuntimeError("the sweep failed")
    with outbox.sweeping() as again:
        assert again
    held = sql(stack, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 4244")[0][0]
    assert held == 0


def test_the_pacer_a_job_gets_reads_the_databases_load(stack):
    """bootstrap.pacer(), as every job builds it: adaptive, its signal read for real."""
    pacer = bootstrap.pacer()
    assert pacer.settings.mode == "adaptive"
    with pacer.batch():
        pass
    assert pacer.readings == 1
