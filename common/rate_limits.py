"""Rate limits per principal and action class: what the limit is, and what to answer.

Pure, no I/O: the bucket itself lives in Redis (common/adapters/redis_rate_limits.py).
Limits come from three places, each overriding the one before, field by field: the
defaults (common/config.py), the caller's roles (`ledger.roles.rate_limits`) and the
caller's own override (`ledger.principals.rate_limits`). Both columns hold the same
shape, `{"money": {"per_second": 50, "burst": 100}, "read": {...}}`, and `limits_of`
is the one check of it, for whatever writes them and for `resolve`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.config import Settings

MONEY, READ, ADMIN = "money", "read", "admin"
ACTION_CLASSES = (MONEY, READ, ADMIN)

# Bounds that keep the Redis script's microsecond arithmetic exact (burst x interval
# stays well below 2**53); below one request per 1,000 s there is nothing to limit.
MIN_PER_SECOND, MAX_PER_SECOND = 0.001, 1_000_000.0
MAX_BURST = 1_000_000


@dataclass(frozen=True)
class Rate:
    """`per_second` sustained, with up to `burst` at once from a full bucket."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        _check_per_second(self.per_second, "per_second")
        _check_burst(self.burst, "burst")

    @property
    def interval_us(self) -> int:
        """The emission interval: one request's worth of time, in whole microseconds."""
        return max(1, round(1_000_000 / self.per_second))


@dataclass(frozen=True)
class Bucket:
    """One principal's budget for one action class."""

    principal: str
    action_class: str

    def __post_init__(self) -> None:
        _check_class(self.action_class)

    @property
    def key(self) -> str:
        return f"ratelimit:{self.principal}:{self.action_class}"


@dataclass(frozen=True)
class Decision:
    """One check's answer. `enforced` is False when no limiter answered (limits off, or
    Redis unreachable and failing open): then there is nothing true to put in headers."""

    allowed: bool
    limit: int  # the burst: requests a full bucket allows at once
    remaining: int  # requests allowed right now after this one
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # until this request would have been allowed; 0 when allowed
    enforced: bool = True

    @classmethod
    def unenforced(cls, rate: Rate) -> Decision:
        return cls(allowed=True, limit=rate.burst, remaining=rate.burst, reset_s=0.0, retry_after_s=0.0, enforced=False)


class NoLimiter:
    """The limiter when rate limits are off (LEDGER_RATE_LIMIT_ENABLED=false)."""

    def check(self, bucket: Bucket, rate: Rate) -> Decision:
        return Decision.unenforced(rate)


def defaults_from(settings: Settings) -> dict[str, Rate]:
    return {
        MONEY: Rate(settings.rate_limit_money_per_s, settings.rate_limit_money_burst),
        READ: Rate(settings.rate_limit_read_per_s, settings.rate_limit_read_burst),
        ADMIN: Rate(settings.rate_limit_admin_per_s, settings.rate_limit_admin_burst),
    }


def response_headers(decision: Decision) -> dict[str, str]:
    """`RateLimit-Limit`, `-Remaining` and `-Reset` (whole seconds until the bucket is
    full, rounded up), as in the IETF httpapi rate-limit headers draft; `Retry-After`
    (whole seconds, rounded up, at least 1) on a refusal."""
    if not decision.enforced:
        return {}
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_s)),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return headers


def resolve(
    action_class: str,
    role_limits: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    principal_override: Mapping[str, Any] | None,
    defaults: Mapping[str, Rate],
) -> Rate:
    """The caller's rate for `action_class`. Each role's limits are laid over the
    defaults; a caller with several roles gets the most generous of them (a second
    role never lowers what the first allows); the principal's override is laid over
    that. A field missing at one level comes from the level below."""
    _check_class(action_class)
    base = defaults[action_class]
    roles = [role_limits] if isinstance(role_limits, Mapping) else list(role_limits or [])
    per_role = [_overlay(base, limits_of(limits).get(action_class, {})) for limits in roles]
    if per_role:
        base = Rate(max(r.per_second for r in per_role), max(r.burst for r in per_role))
    override = limits_of({} if principal_override is None else principal_override)
    return _overlay(base, override.get(action_class, {}))


def limits_of(value: Any) -> dict[str, dict[str, Any]]:
    """`value` checked as a rate-limits document; ValueError names what is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError("rate limits must be an object of action classes")
    checked: dict[str, dict[str, Any]] = {}
    for action_class, fields in value.items():
        _check_class(action_class)
        if not isinstance(fields, Mapping):
            raise ValueError(f"rate limits for {action_class!r} must be an object")
        unknown = set(fields) - {"per_second", "burst"}
        if unknown:
            raise ValueError(f"rate limits for {action_class!r}: unknown fields {sorted(unknown)}")
        if "per_second" in fields:
            _check_per_second(fields["per_second"], f"{action_class}.per_second")
        if "burst" in fields:
            _check_burst(fields["burst"], f"{action_class}.burst")
        checked[action_class] = dict(fields)
    return checked


def _overlay(rate: Rate, fields: Mapping[str, Any]) -> Rate:
    return Rate(fields.get("per_second", rate.per_second), fields.get("burst", rate.burst))


def _check_class(action_class: object) -> None:
    if action_class not in ACTION_CLASSES:
        raise ValueError(f"unknown action class {action_class!r}; one of {', '.join(ACTION_CLASSES)}")


def _check_per_second(value: object, name: str) -> None:
    # bool is an int to Python, never a rate to a reader
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not MIN_PER_SECOND <= value <= MAX_PER_SECOND:
        raise ValueError(f"{name} must be between {MIN_PER_SECOND} and {MAX_PER_SECOND:.0f}, not {value!r}")


def _check_burst(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if not 1 <= value <= MAX_BURST:
        raise ValueError(f"{name} must be between 1 and {MAX_BURST}, not {value!r}")
