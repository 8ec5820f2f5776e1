"""Automatic actions' pure rules (docs/automation.md): which wallets an event touches,
the periods of recurring allocations, the triggers that make each firing unique, and
the idempotency keys derived from them. No I/O: the engine (common/automation_engine.py)
and its store do that.

A firing is idempotent per (rule, trigger): 'event:<transaction id>' for a threshold
rule judged on a ledger event, 'period:<period start>' for a recurring allocation. The
keys of what a firing posts derive from the same pair, so a redelivery that carries on
with a firing posts (and charges) nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.auth.callers import Caller, Grant, Principal
from common.auth.tokens import AUTOMATION_ISSUER

THRESHOLD_KINDS = ("auto_topup", "low_balance")
PERIODS = ("hour", "day", "week", "month")
AUTOMATION_PRINCIPAL = "automation"
# What a rule's own posting carries in its metadata, so its event is known for one.
RULE_MARK = "automation_rule_id"


@dataclass(frozen=True)
class Rule:
    id: int
    tenant: str
    kind: str
    wallet_id: int
    asset: str
    threshold: int | None = None
    amount: int | None = None
    funding_ref: str | None = None
    period: str | None = None
    member_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Firing:
    """ledger.automation_fire's answer: whether to act, and the firing that records it."""

    act: bool
    id: int | None = None
    status: str | None = None
    charge_id: str | None = None  # the provider's, once an auto top-up's firing is charged


def touched_wallets(event: Mapping[str, Any]) -> list[int]:
    """The customer wallets an event's legs moved (system accounts have a system_role),
    in leg order, each once."""
    legs = event.get("legs") or []
    return list(dict.fromkeys(int(leg["wallet_id"]) for leg in legs if leg.get("system_role") is None))


def is_auto_top_up(event: Mapping[str, Any]) -> bool:
    """Whether the event is an auto top-up's own posting, which never triggers another
    auto top-up (no loops). The metadata alone can't tell: any caller may write it, and
    the automation's allocations carry it too (a pool they drain must still top up). The
    actor can: only the automation posts as its principal, of an issuer no token has."""
    metadata, actor = event.get("metadata"), event.get("actor")
    return (
        event.get("action") == "topup"
        and isinstance(actor, Mapping)
        and actor.get("principal") == AUTOMATION_PRINCIPAL
        and actor.get("issuer") == AUTOMATION_ISSUER
        and isinstance(metadata, Mapping)
        and metadata.get(RULE_MARK) is not None
    )


def event_trigger(transaction_id: int) -> str:
    return f"event:{transaction_id}"


def period_start(period: str, now: datetime) -> datetime:
    """The UTC start of the hour, day, ISO week (Monday) or month that `now` is in."""
    at = now.astimezone(UTC)
    if period == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}: one of {', '.join(PERIODS)}")


def period_trigger(start: datetime) -> str:
    return f"period:{start.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def topup_key(rule_id: int, trigger: str) -> str:
    """The charge's and the top-up's idempotency key: one per rule and triggering event."""
    return f"auto-topup:{rule_id}:{trigger}"


def allocate_key(rule_id: int, trigger: str, member_id: int) -> str:
    """One allocation per rule, period and member ('period:<start>' names the period)."""
    return f"auto-allocate:{rule_id}:{trigger.removeprefix('period:')}:{member_id}"


def caller_for(rule: Rule, request_id: str) -> Caller:
    """Who an automatic action acts as: the rule's tenant, with top-up, allocate and read
    over every wallet. The rule itself was authorized when it was created, within its
    creator's boundary (the wallets function); the engine acts only on the rule's own
    wallets, so the broad grant is never used beyond them."""
    principal = Principal(
        AUTOMATION_PRINCIPAL,
        AUTOMATION_ISSUER,
        AUTOMATION_PRINCIPAL,
        "service",
        rule.tenant,
        grants=(Grant(AUTOMATION_PRINCIPAL, frozenset({"topup", "allocate", "read"}), "all"),),
    )
    return Caller(principal, request_id=request_id)


def topic_of(source: str) -> str:
    """The topic a pushed CloudEvent came from: its source is
    //pubsub.googleapis.com/projects/<project>/topics/<topic> (empty when the push
    subscription's endpoint names none: every subscription, Terraform's and the local
    stack's, names it)."""
    _, found, topic = source.rpartition("/topics/")
    return topic if found else ""
