"""A function that dies between the Postgres commit and the completion of the
idempotency record must not post twice when the request is retried."""

import hashlib
import time

import pytest

from common import bootstrap
from common.adapters.firestore_idempotency import FirestoreRecordStore
from common.config import get_settings
from common.idempotency import Idempotency
from common.ledger import commands
from common.service import LedgerService
from tests.support import balance, key, new_wallet, postings_with_key


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the request path may catch it, like a killed process."""


class CrashBeforeCompleting(FirestoreRecordStore):
    def complete(self, doc_id, fields):
        raise SimulatedCrash()


def service_with(store, lease_s):
    idempotency = Idempotency(store, ttl_s=3600, wait_s=2, lease_s=lease_s)
    return LedgerService(bootstrap.ledger(), lambda: idempotency, bootstrap.locks)


def stores():
    settings = get_settings()
    client = bootstrap.firestore_client()
    return (
        CrashBeforeCompleting(client, settings.idempotency_collection, settings.firestore_timeout_s),
        FirestoreRecordStore(client, settings.idempotency_collection, settings.firestore_timeout_s),
    )


@pytest.mark.parametrize("action", ["top_up", "usage"])
def test_retry_after_a_crash_between_commit_and_record_posts_nothing_more(stack, action):
    crashing, healthy = stores()
    wallet, k = new_wallet(stack, funded=500), key()
    cmd = (
        commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref="pay")
        if action == "top_up"
        else commands.Usage(wallet_id=wallet, asset="TST", amount=100, usage_id="u", product="p")
    )
    with pytest.raises(SimulatedCrash):
        getattr(service_with(crashing, lease_s=0.2), action)(cmd, k)
    assert postings_with_key(stack, k) == 1  # the posting committed; the record is stuck in progress
    after_crash = balance(stack, wallet)

    retry = getattr(service_with(healthy, lease_s=0.2), action)
    time.sleep(0.3)  # the dead owner's lease runs out
    outcome = retry(cmd, k)
    assert outcome.status == 201 and outcome.replayed
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == after_crash
    assert retry(cmd, k).replayed  # and now the record is complete
    assert postings_with_key(stack, k) == 1


def test_retry_after_the_record_is_lost_entirely_posts_nothing_more(stack):
    _, healthy = stores()
    service = service_with(healthy, lease_s=30)
    wallet, k = new_wallet(stack), key()
    cmd = commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref="pay")
    first = service.top_up(cmd, k)
    healthy.release(hashlib.sha256(k.encode()).hexdigest())  # e.g. expired by its TTL
    again = service.top_up(cmd, k)
    assert again.replayed and again.body == first.body
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 100
