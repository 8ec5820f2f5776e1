"""The automation's pure rules: periods, triggers and keys, what an event touches."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.auth.tokens import parse_issuers
from common.automation import (
    Rule,
    allocate_key,
    caller_for,
    event_trigger,
    is_auto_top_up,
    period_start,
    period_trigger,
    topic_of,
    topup_key,
    touched_wallets,
)

AT = datetime(2026, 12, 3, 17, 45, 12, 5, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("hour", datetime(2026, 12, 3, 17, tzinfo=UTC)),
        ("day", datetime(2026, 12, 3, tzinfo=UTC)),
        ("week", datetime(2026, 11, 30, tzinfo=UTC)),  # the ISO week starts on Monday
        ("month", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_a_period_starts_at_its_utc_boundary(period, start):
    assert period_start(period, AT) == start
    # the same instant in another zone is the same period
    assert period_start(period, AT.astimezone(timezone(timedelta(hours=-9)))) == start


def test_an_unknown_period_is_refused():
    with pytest.raises(ValueError):
        period_start("year", AT)


def test_triggers_and_keys_derive_from_the_rule_and_what_triggered_it():
    assert event_trigger(42) == "event:42"
    trigger = period_trigger(period_start("day", AT))
    assert trigger == "period:2026-12-03T00:00:00Z"
    assert topup_key(7, "event:42") == "auto-topup:7:event:42"
    assert allocate_key(7, trigger, 31) == "auto-allocate:7:2026-12-03T00:00:00Z:31"
    assert allocate_key(7, trigger, 31) != allocate_key(7, trigger, 32)


def test_an_event_touches_its_customer_wallets_not_the_system_accounts():
    event = {
        "legs": [
            {"wallet_id": 3, "system_role": "revenue", "amount": 10},
            {"wallet_id": 20, "system_role": None, "amount": -5},
            {"wallet_id": 21, "system_role": None, "amount": -5},
            {"wallet_id": 20, "system_role": None, "amount": 0},
        ]
    }
    assert touched_wallets(event) == [20, 21]
    assert touched_wallets({}) == []


def test_an_auto_top_ups_own_posting_is_known_by_its_action_actor_and_metadata():
    actor = caller_for(Rule(7, "acme", "auto_topup", 5, "IDR"), "auto-topup:7:event:1").actor()
    own = {"action": "topup", "actor": actor, "metadata": {"automation_rule_id": 7, "trigger": "event:1"}}
    assert is_auto_top_up(own)
    # the automation's recurring allocation: it may drain a pool below its auto top-up's threshold
    assert not is_auto_top_up({**own, "action": "allocate"})
    # anyone's posting with the metadata forged, even naming the automation under another issuer
    assert not is_auto_top_up({**own, "actor": {**actor, "principal": "tester"}})
    assert not is_auto_top_up({**own, "actor": {**actor, "issuer": "https://issuer.example.com"}})
    assert not is_auto_top_up({**own, "actor": None})
    assert not is_auto_top_up({**own, "metadata": {}}) and not is_auto_top_up({**own, "metadata": None})


@pytest.mark.parametrize("issuer", ["ledger", "pubsub"])
def test_no_token_issuer_may_be_the_automations_or_the_topics(issuer):
    """Else a token could post as the automation (and escape the auto top-ups) or as a topic."""
    trusted = [{"issuer": issuer, "certs_url": "https://example.com/certs", "audiences": ["a"]}]
    with pytest.raises(ValueError, match="not a token's"):
        parse_issuers(json.dumps(trusted))


def test_the_automation_acts_in_the_rules_tenant_with_top_up_allocate_and_read_only():
    caller = caller_for(Rule(1, "acme", "auto_topup", 5, "IDR"), "auto-topup:1:event:2")
    assert caller.tenant == "acme" and caller.principal.id == "automation"
    assert {scope for grant in caller.principal.grants for scope in grant.scopes} == {"topup", "allocate", "read"}
    assert caller.actor(caller.principal.grants[0])["request_id"] == "auto-topup:1:event:2"


def test_the_pushed_topic_is_read_from_the_events_source():
    assert topic_of("//pubsub.googleapis.com/projects/p/topics/ledger-events") == "ledger-events"
    assert topic_of("//pubsub.googleapis.com/") == ""
