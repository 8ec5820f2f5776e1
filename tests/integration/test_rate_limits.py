"""Rate limits against the test stack's real Redis: the GCRA script, shared buckets,
expiry, and failing open when Redis is unreachable or answers with an error."""

import logging
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from common import bootstrap
from common.adapters.redis_rate_limits import RedisRateLimiter
from common.rate_limits import Bucket, Rate, response_headers

FAST = Rate(per_second=20, burst=5)  # a token every 50 ms: waits stay short
NO_REFILL = Rate(per_second=0.001, burst=10)  # nothing comes back while a test runs


def bucket(action_class="money"):
    return Bucket(f"p-{uuid.uuid4().hex[:12]}", action_class)


@pytest.fixture
def limiter(stack):
    return RedisRateLimiter(bootstrap.redis_client())


def test_a_burst_over_the_limit_is_refused_with_retry_after(limiter):
    b = bucket()
    answers = [limiter.check(b, FAST) for _ in range(8)]
    assert [a.allowed for a in answers] == [True] * 5 + [False] * 3
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]
    refused = answers[5]
    assert refused.enforced and refused.remaining == 0 and refused.limit == 5
    assert 0 < refused.retry_after_s <= 0.05  # at most one emission interval
    assert 0.2 < refused.reset_s <= 0.25  # five intervals until the bucket is full again
    assert response_headers(refused)["Retry-After"] == "1"


def test_tokens_come_back_over_time(limiter):
    b = bucket()
    while limiter.check(b, FAST).allowed:
        pass
    refused = limiter.check(b, FAST)
    assert not refused.allowed
    time.sleep(refused.retry_after_s + 0.005)
    back = limiter.check(b, FAST)
    assert back.allowed and back.remaining == 0  # one token came back, and this took it
    assert not limiter.check(b, FAST).allowed
    time.sleep(limiter.check(b, FAST).reset_s + 0.005)
    assert limiter.check(b, FAST).remaining == FAST.burst - 1  # full again


def test_an_idle_bucket_expires_from_redis(limiter):
    b = bucket()
    first = limiter.check(b, FAST)
    ttl_ms = bootstrap.redis_client().pttl(b.key)
    assert 0 < ttl_ms <= 50 and first.reset_s <= 0.05
    time.sleep(first.reset_s + 0.01)
    assert bootstrap.redis_client().exists(b.key) == 0


def test_two_limiters_with_their_own_connections_share_one_bucket(stack):
    """As two function instances do: each its own client, one bucket in Redis."""
    url = stack.env()["LEDGER_REDIS_URL"]
    one, two = (RedisRateLimiter(redis.Redis.from_url(url)) for _ in range(2))
    b = bucket()
    answers = [(one if n % 2 else two).check(b, NO_REFILL).allowed for n in range(20)]
    assert answers == [True] * 10 + [False] * 10


def test_concurrent_checks_allow_exactly_the_burst(limiter):
    b = bucket()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: limiter.check(b, NO_REFILL).allowed, range(200)))
    assert answers.count(True) == NO_REFILL.burst


def test_principals_and_classes_do_not_share_a_bucket(limiter):
    alice_money = bucket("money")
    while limiter.check(alice_money, NO_REFILL).allowed:
        pass
    alice_read = Bucket(alice_money.principal, "read")
    bob_money = bucket("money")
    assert limiter.check(alice_read, NO_REFILL).remaining == NO_REFILL.burst - 1
    assert limiter.check(bob_money, NO_REFILL).remaining == NO_REFILL.burst - 1
    assert not limiter.check(alice_money, NO_REFILL).allowed


def test_a_flushed_script_cache_is_reloaded(limiter):
    """EVALSHA after a Redis restart or failover meets NOSCRIPT; the script loads again."""
    b = bucket()
    assert limiter.check(b, NO_REFILL).remaining == 9
    bootstrap.redis_client().script_flush()
    assert limiter.check(b, NO_REFILL).remaining == 8


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_redis_fails_open_with_one_warning(stack, caplog):
    client = redis.Redis(host="127.0.0.1", port=closed_port(), socket_timeout=0.5, socket_connect_timeout=0.5)
    limiter = RedisRateLimiter(client, warn_every_s=60, pause_after_error_s=0)
    b = bucket("read")
    with caplog.at_level(logging.WARNING, logger="common.adapters.redis_rate_limits"):
        answers = [limiter.check(b, Rate(1, 1)) for _ in range(5)]
    assert all(a.allowed and not a.enforced for a in answers)
    assert response_headers(answers[0]) == {}
    [warning] = caplog.records
    assert (warning.principal, warning.action_class, warning.error) == (b.principal, "read", "ConnectionError")


def test_after_an_error_redis_is_left_alone_for_the_pause(stack, monkeypatch):
    client = redis.Redis(host="127.0.0.1", port=closed_port(), socket_timeout=0.5, socket_connect_timeout=0.5)
    limiter = RedisRateLimiter(client, pause_after_error_s=60)
    assert limiter.check(bucket(), FAST).allowed
    calls = []
    monkeypatch.setattr(client, "evalsha", lambda *a, **k: calls.append(a))
    assert limiter.check(bucket(), FAST).allowed and calls == []


def test_an_error_answer_from_redis_fails_open_too(limiter, caplog):
    b = bucket()
    bootstrap.redis_client().hset(b.key, "not", "a bucket")  # GET inside the script: WRONGTYPE
    with caplog.at_level(logging.WARNING, logger="common.adapters.redis_rate_limits"):
        decision = limiter.check(b, FAST)
    assert decision.allowed and not decision.enforced
    assert [r.error for r in caplog.records] == ["ResponseError"]
