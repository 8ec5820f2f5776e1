"""Per-wallet locks in Redis (Memorystore in production).

A lock is owned by a random token (SET NX PX) and released only by its owner
(compare-and-delete in Lua), both as redis-py's Lock implements them. Waiting is
bounded. The lock only spares Postgres from queueing usages of one wallet: if it
expires mid-operation, ledger.commit_posting() still refuses an overspend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from common import timing
from common.errors import DependencyUnavailable, InProgress

log = logging.getLogger(__name__)


class RedisLocks:
    def __init__(self, client: redis.Redis, ttl_ms: int, wait_ms: int) -> None:
        self._client = client
        self._ttl_s = ttl_ms / 1000
        self._wait_s = wait_ms / 1000

    @contextmanager
    def wallet(self, wallet_id: int) -> Iterator[None]:
        lock = self._client.lock(
            f"ledger:lock:wallet:{wallet_id}",
            timeout=self._ttl_s,
            sleep=0.002,
            blocking=True,
            blocking_timeout=self._wait_s,
        )
        try:
            with timing.span("redis"):
                acquired = lock.acquire()
        except RedisError as error:
            raise DependencyUnavailable("the lock service is unreachable", details={"service": "redis"}) from error
        if not acquired:
            raise InProgress(
                "the wallet is busy with another usage; retry shortly",
                code="wallet_locked",
                details={"wallet_id": wallet_id},
            )
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
