"""Rate-limit buckets in Redis (Memorystore in production): GCRA in one Lua script.

GCRA (the generic cell rate algorithm) is a token bucket kept as one number per
bucket, the theoretical arrival time (TAT): when the bucket will be full again. A
request moves it one emission interval later, and is allowed while that stays within
`burst` intervals of now. The script reads the clock with Redis TIME, so every function
instance shares one limit however skewed their own clocks are, and the read, decision
and write are one atomic step. The key expires when the bucket would be full, so an
idle principal costs nothing. redis-py's registered script sends EVALSHA and loads the
script on NOSCRIPT (a restarted or failed-over Redis).

Redis unreachable: fail open (allow, a warning at most once a minute per instance, and
no Redis call for a second, so a blackholed Redis does not add its timeout to every
request). Why: docs/rate-limits.md. The limiter guards capacity, never money.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import timing
from common.rate_limits import Bucket, Decision, Rate

log = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: emission interval (µs), burst. Microsecond integers stay
# exact in Lua's doubles; string.format('%d') writes them without an exponent.
# Answers {allowed, remaining, retry_after_us, reset_us}.
GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', math.ceil(reset / 1000)))
return {1, math.floor((burst * interval - reset) / interval), 0, reset}
"""


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, *, warn_every_s: float = 60.0, pause_after_error_s: float = 1.0) -> None:
        self._script = client.register_script(GCRA)
        self._warn_every_s = warn_every_s
        self._pause_after_error_s = pause_after_error_s
        self._state = threading.Lock()
        self._paused_until = 0.0
        self._last_error = ""  # the class of the latest error, for the warning
        self._warned_at: float | None = None
        self._unlimited = 0  # requests let through since the last warning

    def check(self, bucket: Bucket, rate: Rate) -> Decision:
        if time.monotonic() < self._paused_until:
            return self._fail_open(bucket, rate)
        try:
            with timing.span("redis"):
                allowed, remaining, retry_after_us, reset_us = self._script(
                    keys=[bucket.key], args=[rate.interval_us, rate.burst]
                )
        except (RedisConnectionError, RedisTimeoutError) as error:
            # unreachable, timed out, still loading its data, refused our credentials
            # (the last two are subclasses of ConnectionError)
            return self._fail_open(bucket, rate, error)
        except RedisError as error:
            # Redis answered with an error: out of memory, a read-only replica after a
            # failover, a broken script. As unusable as an unreachable Redis, and the
            # same reasoning holds; the warning names the error's class.
            return self._fail_open(bucket, rate, error)
        return Decision(
            allowed=bool(allowed),
            limit=rate.burst,
            remaining=int(remaining),
            reset_s=reset_us / 1_000_000,
            retry_after_s=retry_after_us / 1_000_000,
        )

    def _fail_open(self, bucket: Bucket, rate: Rate, error: RedisError | None = None) -> Decision:
        now = time.monotonic()
        with self._state:
            if error is not None:
                self._paused_until = now + self._pause_after_error_s
                self._last_error = type(error).__name__
            self._unlimited += 1
            if self._warned_at is not None and now - self._warned_at < self._warn_every_s:
                return Decision.unenforced(rate)
            self._warned_at, unlimited, self._unlimited = now, self._unlimited, 0
            last_error = self._last_error
        # the principal and class only: the request's token never reaches the limiter
        log.warning(
            "rate limiter unavailable: requests are allowed without a limit (fail open)",
            extra={
                "principal": bucket.principal,
                "action_class": bucket.action_class,
                "error": last_error,
                "unlimited_since_last_warning": unlimited,
            },
        )
        return Decision.unenforced(rate)
