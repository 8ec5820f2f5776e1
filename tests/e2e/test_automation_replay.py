"""Replaying automation's dead letters through the running stack: a ledger event too old
to act on is dead-lettered, the operator's command replays it to automation's own replay
topic (pushed to automation alone, never to the events topic's other subscribers), and
the rule acts on it exactly once, however many times the event is replayed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common import events
from emulators.stack import PROJECT, wait_for
from tests.automation_support import auto_top_ups, charges, firings, rule
from tests.e2e.test_event_age_and_trace import LONG_AGO, logged, push
from tests.e2e.test_messages import _ack_dead_letter, _cli, _dead_letter, _rest, _waiting
from tests.support import balance, key, new_wallet, sql


@pytest.fixture
def automation_dead_letters(stack) -> str:
    """automation's dead-letter topic and its pull subscription (the stack makes them with
    the replay topic's push subscription; made here too, so the test needs neither)."""
    name = stack.settings().automation_dead_letter_topic
    _rest(stack, "PUT", f"topics/{name}")
    _rest(stack, "PUT", f"subscriptions/{name}", {"topic": f"projects/{PROJECT}/topics/{name}"})
    return name


def funding_event(stack, wallet: int) -> dict[str, Any]:
    """The ledger event of the top-up that opened `wallet`, as the outbox renders it."""
    rows = sql(stack, "SELECT event FROM ledger.outbox_events WHERE event ->> 'wallet_id' = CAST(:w AS text)"
                      " ORDER BY transaction_id LIMIT 1", w=wallet)  # fmt: skip
    event = rows[0][0]
    return event if isinstance(event, dict) else json.loads(event)


def dead_lettered(stack, subscription: str, event: dict[str, Any]) -> str:
    """`event` pushed to automation from the events topic long after it was published:
    returns the id of the dead letter it became."""
    message, marker = events.message(event), key("old-event")
    _, status = push(stack, "automation", stack.settings().events_topic, message.data, LONG_AGO,
                     **message.attributes, marker=marker)  # fmt: skip
    assert 200 <= status < 300
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == marker, subscription)
    assert "LEDGER_MAX_EVENT_AGE_S" in letter["attributes"]["dead_letter_reason"]
    return str(letter["messageId"])


def replayed(stack, subscription: str, letter_id: str) -> dict[str, Any]:
    """The dead letter replayed with the operator's command; waits for automation's answer."""
    report = _cli("--function", "automation", "replay", letter_id)
    replay_topic = f"projects/{PROJECT}/topics/{stack.settings().automation_replay_topic}"
    ((done,),) = [report["replayed"]]
    assert done["id"] == letter_id and done["topic"] == replay_topic
    assert all(m["message"]["messageId"] != letter_id for m in _handed_back(stack, subscription))  # acknowledged
    mine = lambda entry: entry.get("event") == "automation_replayed" and entry.get("message_id") == done["new_id"]  # noqa: E731
    wait_for(lambda: logged(stack, "automation", mine), "automation's answer to the replay", 60)
    (answer,) = logged(stack, "automation", mine)
    return answer


def _handed_back(stack, subscription: str) -> list[dict[str, Any]]:
    received = _waiting(stack, subscription)
    if received:
        body = {"ackIds": [m["ackId"] for m in received], "ackDeadlineSeconds": 0}
        _rest(stack, "POST", f"subscriptions/{subscription}:modifyAckDeadline", body)
    return received


def test_a_dead_lettered_ledger_event_replayed_to_automation_tops_up_once_however_often_replayed(
    stack, automation_dead_letters
):
    wallet, funding = new_wallet(stack, funded=1000), key("card")
    # below the threshold already: the funding's event, when automation judges it, acts
    rule_id = rule(stack, "auto_topup", wallet, threshold=2000, amount=5, funding_ref=funding)
    event = funding_event(stack, wallet)

    first = dead_lettered(stack, automation_dead_letters, event)
    assert auto_top_ups(stack, rule_id) == [] and charges(stack, funding) == []  # not acted on when too old
    answer = replayed(stack, automation_dead_letters, first)
    trigger = f"event:{event['transaction_id']}"
    assert answer["acted"] == [{"rule_id": rule_id, "kind": "auto_topup", "trigger": trigger}]
    assert len(auto_top_ups(stack, rule_id)) == 1 and len(charges(stack, funding)) == 1
    assert firings(stack, rule_id) == ["finished"] and balance(stack, wallet) == 1005

    # the same event dead-lettered and replayed again: its firing is done, nothing twice
    again = dead_lettered(stack, automation_dead_letters, event)
    assert replayed(stack, automation_dead_letters, again)["acted"] == []
    assert len(auto_top_ups(stack, rule_id)) == 1 and len(charges(stack, funding)) == 1
    assert firings(stack, rule_id) == ["finished"] and balance(stack, wallet) == 1005


def test_a_dead_letter_that_is_not_a_ledger_event_is_not_replayed_to_automation(stack, automation_dead_letters):
    marker = key("stray")
    _, status = push(stack, "automation", "some-other-topic", b"{}", "2099-01-01T00:00:00Z", marker=marker)
    assert 200 <= status < 300
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == marker, automation_dead_letters)
    refused = _cli("--function", "automation", "replay", letter["messageId"], exit_code=1)
    assert "ledger events only" in refused
    # kept, for the operator to see
    kept = _dead_letter(stack, lambda m: m["messageId"] == letter["messageId"], automation_dead_letters)
    assert kept["attributes"]["marker"] == marker
    _ack_dead_letter(stack, letter["messageId"], automation_dead_letters)
