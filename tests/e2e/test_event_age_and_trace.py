"""Through the running functions: an event older than LEDGER_MAX_EVENT_AGE_S is not
processed (a tick acknowledged with a countable warning, a balance action moved to the
dead letters, never lost), and every request's log lines carry Cloud Logging's trace."""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import pytest
import requests

from emulators.stack import PROJECT, wait_for
from tests.e2e.test_messages import _ack_dead_letter, _cli, _dead_letter, _rest
from tests.support import balance, key, new_wallet, postings_with_key

LONG_AGO = "2020-01-01T00:00:00.123456789Z"  # far past the stack's limit (the default, a day)


def push(stack, function: str, topic: str, data: bytes, publish_time: str, **attributes: str) -> tuple[str, int]:
    """A raw Pub/Sub push, as the subscription would send it; returns its id and the status."""
    message_id = str(uuid.uuid4().int)[:16]
    envelope = {
        "subscription": f"projects/{PROJECT}/subscriptions/{topic}-{function}",
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "publishTime": publish_time,
        },
    }
    url = f"{stack.function_url(function)}/projects/{PROJECT}/topics/{topic}"
    return message_id, requests.post(url, json=envelope, timeout=30).status_code


def logged(stack, function: str, wanted) -> list[dict]:
    path = stack.state_dir / f"{function}.log"
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and wanted(entry):
            lines.append(entry)
    return lines


def test_an_old_tick_is_acknowledged_without_running_and_logged_once_for_the_metric(stack):
    message_id, status = push(stack, "lot_expiry", stack.settings().lot_expiry_tick_topic, b"", LONG_AGO)
    assert 200 <= status < 300  # acknowledged: never redelivered
    mine = lambda entry: entry.get("message_id") == message_id  # noqa: E731
    wait_for(lambda: logged(stack, "lot_expiry", mine), "the dropped tick's log line", 30)
    (line,) = logged(stack, "lot_expiry", mine)
    assert line["severity"] == "WARNING" and line["event"] == "event_dropped_too_old"
    assert line["function"] == "lot_expiry" and line["age_s"] > line["max_event_age_s"] > 0


def test_an_old_balance_action_goes_to_the_dead_letters_with_its_reason_and_posts_nothing(stack):
    wallet, k = new_wallet(stack, funded=100), key("old")
    body = {
        "action": "topup",
        "idempotency_key": k,
        "request": {"wallet_id": wallet, "asset": "TST", "amount": 5, "external_ref": k},
    }
    topic = "balance-actions"
    _, status = push(stack, "actions", topic, json.dumps(body).encode(), LONG_AGO, marker=k)
    assert 200 <= status < 300
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == k)
    assert letter["attributes"]["dead_letter_source_topic"] == f"projects/{PROJECT}/topics/{topic}"
    assert "LEDGER_MAX_EVENT_AGE_S" in letter["attributes"]["dead_letter_reason"]
    assert json.loads(base64.b64decode(letter["data"])) == body  # the message as it came
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 100
    _ack_dead_letter(stack, letter["messageId"])


@pytest.fixture
def automation_dead_letters(stack) -> str:
    """automation's dead-letter topic and its pull subscription (the test stack makes them
    with the events' push subscription, which only the tests that need it create)."""
    name = stack.settings().automation_dead_letter_topic
    _rest(stack, "PUT", f"topics/{name}")
    _rest(stack, "PUT", f"subscriptions/{name}", {"topic": f"projects/{PROJECT}/topics/{name}"})
    return name


def test_an_old_ledger_event_for_automation_is_dead_lettered_and_the_operator_lists_and_shows_it(
    stack, automation_dead_letters
):
    marker = key("old-event")
    event = json.dumps({"transaction_id": 1, "marker": marker}).encode()
    _, status = push(stack, "automation", stack.settings().events_topic, event, LONG_AGO, marker=marker)
    assert 200 <= status < 300
    subscription = automation_dead_letters
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == marker, subscription)
    assert "LEDGER_MAX_EVENT_AGE_S" in letter["attributes"]["dead_letter_reason"]
    listed = [m for m in _cli("--function", "automation", "list") if m["id"] == letter["messageId"]]
    assert listed and listed[0]["source_topic"] == f"projects/{PROJECT}/topics/{stack.settings().events_topic}"
    shown = _cli("--function", "automation", "show", letter["messageId"])
    assert shown["data"] == json.loads(event) and "LEDGER_MAX_EVENT_AGE_S" in shown["reason"]
    _ack_dead_letter(stack, letter["messageId"], subscription)


def test_a_push_to_automation_from_a_topic_it_does_not_know_is_dead_lettered_not_run_as_a_tick(
    stack, automation_dead_letters
):
    marker = key("stray")
    _, status = push(stack, "automation", "some-other-topic", b"{}", "2099-01-01T00:00:00Z", marker=marker)
    assert 200 <= status < 300
    subscription = automation_dead_letters
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == marker, subscription)
    assert "some-other-topic" in letter["attributes"]["dead_letter_reason"]
    _ack_dead_letter(stack, letter["messageId"], subscription)


@pytest.mark.parametrize("header", ["traceparent", "X-Cloud-Trace-Context"])
def test_a_requests_log_lines_carry_its_trace_from_either_header(stack, header):
    trace, span = secrets.token_hex(16), secrets.token_hex(8)
    value = f"00-{trace}-{span}-01" if header == "traceparent" else f"{trace}/{int(span, 16)};o=1"
    response = requests.get(f"{stack.function_url('wallets')}/wallets/1", headers={header: value}, timeout=30)
    assert response.status_code == 401  # no token: still a request with its log line
    mine = lambda entry: trace in str(entry.get("logging.googleapis.com/trace", ""))  # noqa: E731
    wait_for(lambda: logged(stack, "wallets", mine), "the request's log line", 30)
    (line,) = logged(stack, "wallets", mine)
    assert line["logging.googleapis.com/trace"] == f"projects/{stack.settings().gcp_project}/traces/{trace}"
    assert line["logging.googleapis.com/spanId"] == span and line["logging.googleapis.com/trace_sampled"] is True
    assert line["message"] == "request" and line["status"] == 401
