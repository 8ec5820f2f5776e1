"""Group commit against real Postgres: postings that wait while another is at the
database go together through ledger.commit_postings(), each with its own outcome."""

import random
import threading
import time

import pytest

from common import bootstrap
from common.adapters.ledger_store import PostgresLedger
from common.errors import Refused
from common.ledger.postings import Leg, Posting
from emulators.stack import wait_for
from tests.support import balance, key, new_wallet, owner, sql, system_account


def move(source: int, target: int, amount: int) -> Posting:
    return Posting("transfer", "TST", amount, source, (Leg(source, -amount), Leg(target, amount)), target)


@pytest.fixture
def ledger(stack):
    return PostgresLedger(bootstrap.pool(), group_commit_max=16, group_commit_in_flight=1)


def post_in_threads(ledger, calls):
    """calls: {name: (posting, key, request_hash)} -> {name: result or error}, each in its own thread."""
    results = {}

    def post(name, posting, idempotency_key, request_hash):
        try:
            results[name] = ledger.post(posting, idempotency_key, request_hash, "tests", None)
        except Exception as error:  # noqa: BLE001 - recorded for the assertions
            results[name] = error

    threads = [threading.Thread(target=post, args=(name, *call)) for name, call in calls.items()]
    for thread in threads:
        thread.start()
    return threads, results


def test_postings_that_wait_go_together_and_each_gets_its_own_outcome(stack, ledger):
    blocker, alice, bob, carol = (new_wallet(stack, funded=100) for _ in range(4))
    earlier_key = key()
    earlier, _ = ledger.post(move(alice, bob, 1), earlier_key, "h-earlier", "tests", None)

    # Hold the blocker's row so the first posting sits at the database; everything
    # submitted meanwhile waits and then goes as one batch.
    holder = owner(stack)
    holder.run("BEGIN")
    holder.run("SELECT 1 FROM ledger.wallets WHERE id = :w FOR UPDATE", w=blocker)
    first, results = post_in_threads(ledger, {"first": (move(blocker, carol, 5), key(), "h")})
    wait_for(lambda: ledger._group._in_flight == 1, "the first posting to reach the database", 10)
    calls = {
        "alice to bob": (move(alice, bob, 10), key(), "h1"),
        "alice to carol": (move(alice, carol, 20), key(), "h2"),  # same wallet twice in the batch
        "overdraft": (move(bob, carol, 10_000), key(), "h3"),
        "replay": (move(alice, bob, 1), earlier_key, "h-earlier"),
        "key reused": (move(alice, bob, 2), earlier_key, "another request"),
    }
    others, more = post_in_threads(ledger, calls)
    wait_for(lambda: len(ledger._group._waiting) == len(calls), "the others to queue", 10)
    holder.run("COMMIT")
    holder.close()
    for thread in first + others:
        thread.join(10)
    results.update(more)

    assert (ledger._group.batches, ledger._group.batched_items) == (1, len(calls))
    # Alice pays twice in one batch, in arrival order: the running balances chain.
    alice_legs = sorted(
        (results[name][0]["entries"][0] for name in ("alice to bob", "alice to carol")),
        key=lambda leg: -leg["balance_after"],
    )
    assert not results["alice to bob"][1] and not results["alice to carol"][1]
    assert alice_legs[0]["balance_after"] == 99 + alice_legs[0]["amount"]
    assert alice_legs[1]["balance_after"] == alice_legs[0]["balance_after"] + alice_legs[1]["amount"] == 69
    assert results["replay"] == (earlier, True)
    overdraft, reused = results["overdraft"], results["key reused"]
    assert isinstance(overdraft, Refused) and overdraft.code == "insufficient_funds"
    assert isinstance(reused, Refused) and reused.code == "idempotency_key_reused"
    assert [balance(stack, w) for w in (blocker, alice, bob, carol)] == [95, 69, 111, 125]
    posted = [results[name][0]["id"] for name in ("first", "alice to bob", "alice to carol")]
    outbox = sql(
        stack, "SELECT count(*) FROM ledger.outbox WHERE transaction_id = ANY(CAST(:ids AS bigint[]))", ids=posted
    )
    assert outbox[0][0] == 3  # one event per posting, written in its own subtransaction


def test_crossing_transfers_from_two_instances_never_deadlock_or_lose_money(stack):
    """Two ledgers (as two function instances) post random transfers among a few
    wallets from many threads; batches lock every wallet first, in id order."""
    wallets = [new_wallet(stack, funded=1_000) for _ in range(5)]
    instances = [PostgresLedger(bootstrap.pool(), group_commit_max=16) for _ in range(2)]
    failures: list[BaseException] = []
    refused = []

    def worker(seed):
        rng, ledger = random.Random(seed), instances[seed % 2]
        for _ in range(25):
            source, target = rng.sample(wallets, 2)
            try:
                ledger.post(move(source, target, rng.randint(1, 300)), key(), "h", "tests", None)
            except Refused as error:
                refused.append(error.code)
            except Exception as error:  # noqa: BLE001 - any other outcome fails the test
                failures.append(error)

    def deadlocks():
        return sql(stack, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")[0][0]

    before = deadlocks()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a posting never returned"
    assert failures == []
    # A deadlock would have been retried unnoticed. Backends report their statistics
    # when they exit, so close the pool's connections before reading the counter.
    bootstrap.pool().close()
    time.sleep(0.5)
    assert deadlocks() == before
    assert set(refused) <= {"insufficient_funds"}
    assert sum(balance(stack, w) for w in wallets) == 5_000
    assert sum(instance._group.batched_items for instance in instances) > 0


def test_a_committed_transaction_stays_sealed_inside_a_subtransaction(stack):
    wallet, funding = new_wallet(stack, funded=10), system_account(stack, "TST", "funding")
    old = sql(stack, "SELECT max(transaction_id) FROM ledger.entries WHERE wallet_id = :w", w=wallet)[0][0]
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run("SAVEPOINT inner_work")
        with pytest.raises(Exception) as error:
            con.run(
                "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES"
                f" ({old}, {funding}, 'TST', -1), ({old}, {funding}, 'TST', 1)"
            )
        assert error.value.args[0]["M"] == "sealed_transaction"
    finally:
        con.run("ROLLBACK")
        con.close()
