"""A function that dies after its Postgres commit, before it answers, must not post
twice when the request is retried: the retry finds the posting under its key."""

import time

import pytest

from common import bootstrap
from common.adapters.firestore_idempotency import FirestoreRecordStore
from common.config import get_settings
from common.idempotency import Idempotency, record_id
from common.ledger import commands
from tests.support import CALLER, LedgerProxy, balance, key, ledger_service, new_wallet, postings_with_key


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the request path may catch it, like a killed process."""


class DeadProcessStore(FirestoreRecordStore):
    """The store as seen by a process that was killed: it never releases its claim."""

    def release(self, doc_id, expected):
        raise SimulatedCrash()


class CrashAfterCommit(LedgerProxy):
    """The ledger of a process killed right after Postgres committed its posting."""

    def post(self, *args, **kwargs):
        self._ledger.post(*args, **kwargs)
        raise SimulatedCrash()


def service_with(store, ledger, lease_s, wait_s=2.0):
    idempotency = Idempotency(store, ttl_s=3600, wait_s=wait_s, lease_s=lease_s)
    return ledger_service(ledger, idempotency=lambda: idempotency)


def stores():
    settings = get_settings()
    client = bootstrap.firestore_client()
    return (
        DeadProcessStore(client, settings.idempotency_collection, settings.firestore_timeout_s),
        FirestoreRecordStore(client, settings.idempotency_collection, settings.firestore_timeout_s),
    )


@pytest.mark.parametrize("action", ["top_up", "usage"])
def test_retry_after_a_crash_past_the_commit_replays_at_once_and_posts_nothing_more(stack, action):
    crashing, healthy = stores()
    wallet, k = new_wallet(stack, funded=500), key()
    cmd = (
        commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref=key("pay"))
        if action == "top_up"
        else commands.Usage(wallet_id=wallet, asset="TST", amount=100, usage_id=key("u"), product="p")
    )
    with pytest.raises(SimulatedCrash):
        getattr(service_with(crashing, CrashAfterCommit(bootstrap.ledger()), lease_s=30), action)(CALLER, cmd, k)
    assert postings_with_key(stack, k) == 1  # the posting committed; the claim is left behind
    after_crash = balance(stack, wallet)

    # No waiting allowed: within the dead owner's 30 s lease, anything but an answer
    # found at once in Postgres would be a 409 request_in_progress.
    retry = getattr(service_with(healthy, bootstrap.ledger(), lease_s=30, wait_s=0), action)
    outcome = retry(CALLER, cmd, k)
    assert outcome.status == 201 and outcome.replayed
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == after_crash
    assert retry(CALLER, cmd, k).body == outcome.body
    assert postings_with_key(stack, k) == 1


def test_a_crash_before_the_commit_is_taken_over_after_the_lease(stack):
    crashing, healthy = stores()
    wallet, k = new_wallet(stack), key()
    cmd = commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref=key("pay"))

    class CrashBeforeCommit(LedgerProxy):
        def post(self, *args, **kwargs):
            raise SimulatedCrash()

    with pytest.raises(SimulatedCrash):
        service_with(crashing, CrashBeforeCommit(bootstrap.ledger()), lease_s=0.2).top_up(CALLER, cmd, k)
    assert postings_with_key(stack, k) == 0
    time.sleep(0.3)  # the dead owner's lease runs out
    outcome = service_with(healthy, bootstrap.ledger(), lease_s=0.2).top_up(CALLER, cmd, k)
    assert outcome.status == 201 and not outcome.replayed
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 100


def test_retry_after_the_record_is_lost_entirely_posts_nothing_more(stack):
    _, healthy = stores()
    service = service_with(healthy, bootstrap.ledger(), lease_s=30)
    wallet, k = new_wallet(stack), key()
    cmd = commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref=key("pay"))
    first = service.top_up(CALLER, cmd, k)
    record = record_id(CALLER.tenant, k)
    stored = healthy.get(record)
    assert stored is not None
    assert healthy.release(record, stored.version)  # e.g. expired by its TTL
    again = service.top_up(CALLER, cmd, k)
    assert again.replayed and again.body == first.body
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 100
