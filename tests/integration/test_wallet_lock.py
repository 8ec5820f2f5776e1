"""The per-wallet Redis lock: owned by a token, released only by its owner, bounded wait."""

import time

import pytest

from common import bootstrap
from common.adapters.redis_locks import RedisLocks
from common.errors import InProgress
from common.ledger import commands
from tests.support import CALLER, balance, key, ledger_service, new_wallet, postings_with_key


def test_a_busy_wallet_answers_409_wallet_locked_and_posts_nothing(stack):
    wallet, k = new_wallet(stack, funded=10), key()
    impatient = RedisLocks(bootstrap.redis_client(), ttl_ms=5000, wait_ms=50)
    service = ledger_service(locks=lambda: impatient)
    holder = bootstrap.redis_client().lock(f"ledger:lock:wallet:{wallet}", timeout=5)
    assert holder.acquire(blocking=False)
    try:
        with pytest.raises(InProgress) as busy:
            service.usage(
                CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=1, usage_id=key("u"), product="p"), k
            )
        assert busy.value.status == 409 and busy.value.code == "wallet_locked"
    finally:
        holder.release()
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 10
    # the key was released with the conflict: the retry posts
    service.usage(CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=1, usage_id=key("u"), product="p"), k)
    assert balance(stack, wallet) == 9


def test_only_the_owner_releases_a_lock(stack):
    locks = RedisLocks(bootstrap.redis_client(), ttl_ms=50, wait_ms=1000)
    name = f"ledger:lock:wallet:{new_wallet(stack)}"
    with locks.wallet(int(name.rsplit(":", 1)[1])):
        other = bootstrap.redis_client().lock(name, timeout=5, blocking_timeout=1)
        assert other.acquire()  # ours expired after 50 ms and someone else took it
        time.sleep(0.1)
    # leaving our block tried to release: the other owner's lock must survive it
    assert bootstrap.redis_client().get(name) == other.local.token
    other.release()
