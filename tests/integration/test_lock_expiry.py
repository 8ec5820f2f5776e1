"""Correctness never depends on the Redis lock: with a lock that expires almost at once,
concurrent usages on one wallet still cannot overspend it."""

from concurrent.futures import ThreadPoolExecutor

from common import bootstrap
from common.adapters.redis_locks import RedisLocks
from common.errors import Refused
from common.ledger import commands
from tests.support import CALLER, balance, key, ledger_service, new_wallet, sql


def test_a_lock_that_expires_mid_operation_cannot_cause_an_overspend(stack):
    tiny = RedisLocks(bootstrap.redis_client(), ttl_ms=1, wait_ms=5000)
    service = ledger_service(locks=lambda: tiny)
    wallet = new_wallet(stack, funded=50)

    def use(n):
        try:
            service.usage(
                CALLER,
                commands.Usage(wallet_id=wallet, asset="TST", amount=1, usage_id=key(f"u{n}"), product="p"),
                key(),
            )
            return "ok"
        except Refused as refused:
            return refused.code

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(use, range(200)))
    assert results.count("ok") == 50
    assert results.count("insufficient_funds") == 150
    assert balance(stack, wallet) == 0
    lowest = sql(stack, "SELECT min(balance_after) FROM ledger.entries WHERE wallet_id = :w", w=wallet)[0][0]
    assert lowest == 0
