"""Per-wallet locks in Redis (Memorystore in production).

A lock is owned by a random token (SET NX PX) and released only by its owner
(compare-and-delete in Lua), both as redis-py's Lock implements them. The lock only
spares Postgres from queueing usages of one wallet: if it expires mid-operation,
ledger.commit_posting() still refuses an overspend.

Waiting is bounded three ways, because a flood on one wallet must not turn into a
flood on Redis: at most `max_waiters` usages wait for one wallet (the rest answer 409
at once), a waiter polls with jittered exponential backoff (redis-py's Lock would poll
every few milliseconds, so the SET calls grew with the number of waiters), and it gives
up after `wait_ms`. The waiters are a sorted set scored by their deadline, so a waiter
whose instance died drops out at its deadline instead of holding a place for good.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock
from tenacity import Retrying, retry_if_result, stop_before_delay, wait_random_exponential

from common import timing
from common.errors import DependencyUnavailable, InProgress

log = logging.getLogger(__name__)

# The first retry comes within BACKOFF_FIRST_S, each next one within twice the last,
# up to BACKOFF_MAX_S (full jitter: uniform from zero); a usage holds a lock for a few
# milliseconds (bench/results/latest.md).
BACKOFF_FIRST_S = 0.004
BACKOFF_MAX_S = 0.05

# KEYS[1] the wallet's waiters; ARGV: the waiter's id, the wait (ms), the most waiters.
# Redis's clock, not the instances': their clocks may disagree.
JOIN_WAITERS = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return 1
"""


def lock_name(wallet_id: int) -> str:
    return f"ledger:lock:wallet:{wallet_id}"


def waiters_name(wallet_id: int) -> str:
    return f"{lock_name(wallet_id)}:waiters"


class RedisLocks:
    def __init__(self, client: redis.Redis, ttl_ms: int, wait_ms: int, max_waiters: int = 16) -> None:
        self._client = client
        self._ttl_s = ttl_ms / 1000
        self._wait_ms = wait_ms
        self._max_waiters = max_waiters
        self._join = client.register_script(JOIN_WAITERS)
        # Built once and shared: tenacity keeps per-call state thread-locally.
        self._retrying = Retrying(
            retry=retry_if_result(lambda acquired: not acquired),
            wait=wait_random_exponential(multiplier=BACKOFF_FIRST_S, max=BACKOFF_MAX_S),
            stop=stop_before_delay(wait_ms / 1000),
            retry_error_callback=lambda state: False,
        )

    @contextmanager
    def wallet(self, wallet_id: int) -> Iterator[None]:
        lock = self._client.lock(lock_name(wallet_id), timeout=self._ttl_s)
        try:
            with timing.span("redis"):
                acquired = lock.acquire(blocking=False) or self._wait_in_line(lock, wallet_id)
        except RedisError as error:
            raise DependencyUnavailable("the lock service is unreachable", details={"service": "redis"}) from error
        if not acquired:
            raise _busy(wallet_id)
        try:
            yield
        finally:
            try:
                with timing.span("redis"):
                    lock.release()
            except LockNotOwnedError:
                log.warning("wallet lock expired before release", extra={"wallet_id": wallet_id})
            except (LockError, RedisError):
                log.warning("wallet lock release failed; it expires on its own", extra={"wallet_id": wallet_id})

    def _wait_in_line(self, lock: Lock, wallet_id: int) -> bool:
        """Poll for the lock as one of at most max_waiters; False when the wait ran out."""
        waiters, me = waiters_name(wallet_id), uuid.uuid4().hex
        if not self._join(keys=[waiters], args=[me, self._wait_ms, self._max_waiters]):
            raise _busy(wallet_id)
        try:
            return bool(self._retrying(lock.acquire, blocking=False))
        finally:
            try:
                self._client.zrem(waiters, me)
            except RedisError:
                log.warning("leaving the wallet's waiters failed; the place lapses at its deadline")


def _busy(wallet_id: int) -> InProgress:
    return InProgress(
        "the wallet is busy with another usage; retry shortly", code="wallet_locked", details={"wallet_id": wallet_id}
    )
