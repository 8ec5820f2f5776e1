"""Balance actions as Pub/Sub messages, end to end through the emulator: pushed to the
actions function, answered on the results topic, dead-lettered and replayed
(docs/messages.md). Each test reads the results through a pull subscription of its own."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from common import bootstrap, dead_letters
from common.messages import failure_id
from emulators import database
from emulators.stack import PROJECT
from tests.support import balance, key, new_wallet, postings_with_key, sql

ACTIONS_TOPIC, METERING_TOPIC = "balance-actions", "metering-usage"
WAIT_S = 90  # a bound for a broken test, not a figure: Pub/Sub's retries set the pace


def full(topic: str) -> str:
    return f"projects/{PROJECT}/topics/{topic}"


@pytest.fixture(scope="module", autouse=True)
def topic_principals(stack):
    database.seed_topic_principals(stack.owner_dsn(), PROJECT)


@pytest.fixture
def results(stack) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """`results(key, count)`: the next `count` results whose `key` attribute is `key`."""
    name = key("results")
    _rest(stack, "PUT", f"subscriptions/{name}", {"topic": full(stack.settings().action_results_topic)})

    def collect(wanted: str, count: int = 1) -> list[dict[str, Any]]:
        found = _pull(stack, name, lambda message: message["attributes"].get("key") == wanted, count)
        return [json.loads(base64.b64decode(m["data"])) | {"attributes": m["attributes"]} for m in found]

    yield collect
    stack.delete_subscription(name)


@pytest.fixture
def own_topic(stack) -> Iterator[Callable[..., str]]:
    """`own_topic(roles, max_deliveries)`: a fresh topic pushed to the actions function,
    a principal with `roles` (none: no principal at all)."""
    subscriptions = []

    def make(roles: list[str] | None = None, max_deliveries: int | None = None) -> str:
        topic = key("topic")
        if roles:
            con = database.owner_connection(stack.owner_dsn())
            try:
                grants = [(role, "all", None) for role in roles]
                database.register_principal(con, topic, "pubsub", "service", topic, None, grants, full(topic))
            finally:
                con.close()
        subscriptions.append(stack.push_subscription("actions", topic, max_deliveries))
        return topic

    yield make
    for name in subscriptions:
        stack.delete_subscription(name)


def publish(stack, topic: str, body: Any, **attributes: str) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    stack.publish(topic, data, attributes)
    return data


def topup(wallet: int, idempotency_key: str, amount: int = 500) -> dict[str, Any]:
    request = {"wallet_id": wallet, "asset": "TST", "amount": amount, "external_ref": key("psp")}
    return {"action": "topup", "idempotency_key": idempotency_key, "request": request}


def usage(wallet: int, amount: int = 10) -> dict[str, Any]:
    return {"wallet_id": wallet, "asset": "TST", "amount": amount, "usage_id": key("u"), "product": "gpu"}


def usage_postings(stack, usage_ids: list[str]) -> int:
    return sql(stack, "SELECT count(*) FROM ledger.transactions WHERE usage_id = ANY(:ids)", ids=usage_ids)[0][0]


def test_a_top_up_message_posts_once_and_answers_each_copy(stack, results):
    wallet, k = new_wallet(stack), key("pay")
    body = topup(wallet, k)
    for _ in range(3):  # the same message published three times
        publish(stack, ACTIONS_TOPIC, body, correlation_id="order-7")
    answers = results(k, 3)
    assert sorted(a["status"] for a in answers) == ["posted", "replayed", "replayed"], answers
    assert len({a["transaction"]["id"] for a in answers}) == 1
    first = answers[0]
    assert first["source_topic"] == full(ACTIONS_TOPIC) and first["action"] == "topup"
    assert first["idempotency_key"] == k and first["correlation_id"] == "order-7" and first["error"] is None
    assert first["attributes"]["source_topic"] == full(ACTIONS_TOPIC)
    assert first["attributes"]["correlation_id"] == "order-7"
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 500


def test_a_usage_batch_published_three_times_posts_each_record_once(stack, results):
    wallet = new_wallet(stack, funded=1000)
    records = [usage(wallet, amount) for amount in (10, 20, 30)]
    batch = {"action": "usage_batch", "batch_id": key("batch"), "records": records}
    for _ in range(3):
        publish(stack, METERING_TOPIC, batch)
    answers = results(batch["batch_id"], 3)
    statuses = sorted(o["status"] for a in answers for o in a["outcomes"])
    assert statuses == ["posted"] * 3 + ["replayed"] * 6, answers
    assert all(a["attributes"]["status"] == "batch" for a in answers)
    # the three records went to the database together, in one call per copy that found
    # them not yet posted (copies delivered at once may both try; one posts, one replays)
    assert 1 <= sum(a["db_calls"] for a in answers) <= 3
    assert usage_postings(stack, [r["usage_id"] for r in records]) == 3
    assert balance(stack, wallet) == 1000 - 60


def test_a_poison_record_gets_its_own_outcome_and_the_others_post(stack, results):
    wallet = new_wallet(stack, funded=1000)
    records = [usage(wallet, 5), {**usage(wallet), "amount": "lots"}, usage(wallet, 7), usage(wallet, 10_000)]
    batch = {"action": "usage_batch", "batch_id": key("batch"), "records": records}
    publish(stack, METERING_TOPIC, batch)
    (answer,) = results(batch["batch_id"])
    outcomes = answer["outcomes"]
    assert [o["status"] for o in outcomes] == ["posted", "invalid", "posted", "refused"], outcomes
    assert outcomes[1]["usage_id"] == records[1]["usage_id"] and outcomes[1]["error"]["code"] == "validation_failed"
    assert outcomes[3]["error"]["code"] == "insufficient_funds"
    assert answer["counts"] == {"posted": 2, "invalid": 1, "refused": 1}
    assert balance(stack, wallet) == 1000 - 12


def test_a_topic_without_a_principal_or_the_scope_gets_forbidden(stack, results, own_topic):
    wallet = new_wallet(stack, funded=100)
    rogue, k = own_topic(), key("pay")
    publish(stack, rogue, topup(wallet, k))
    (answer,) = results(k)
    assert answer["status"] == "forbidden" and answer["source_topic"] == full(rogue) and answer["transaction"] is None
    # the payment service's topic holds no usage scope
    k2 = key("use")
    publish(stack, ACTIONS_TOPIC, {"action": "usage", "request": usage(wallet)}, idempotency_key=k2)
    (answer,) = results(k2)
    assert answer["status"] == "forbidden" and answer["error"]["code"] == "forbidden"
    assert postings_with_key(stack, k) == postings_with_key(stack, k2) == 0 and balance(stack, wallet) == 100


def test_a_malformed_message_goes_to_the_dead_letters_at_once_with_its_reason(stack):
    action = f"explode-{uuid.uuid4().hex[:12]}"
    publish(stack, ACTIONS_TOPIC, {"action": action, "idempotency_key": key()}, marker=action)
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == action)
    assert letter["attributes"]["dead_letter_source_topic"] == full(ACTIONS_TOPIC)
    assert action in letter["attributes"]["dead_letter_reason"]
    shown = _cli("show", letter["messageId"])
    assert shown["source_topic"] == full(ACTIONS_TOPIC) and action in shown["reason"]
    assert shown["data"]["action"] == action
    _ack_dead_letter(stack, letter["messageId"])


def test_a_message_naming_its_own_source_topic_is_dead_lettered_under_its_real_one(stack):
    """A metering message claiming the payments topic as its source: never posted, and a
    replay would go back to the metering topic."""
    wallet, k = new_wallet(stack, funded=100), key("forged")
    publish(stack, METERING_TOPIC, topup(wallet, k), dead_letter_source_topic=full(ACTIONS_TOPIC), marker=k)
    letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == k)
    assert letter["attributes"]["dead_letter_source_topic"] == full(METERING_TOPIC)
    assert "reserved for dead-lettering" in letter["attributes"]["dead_letter_reason"]
    assert _cli("show", letter["messageId"])["source_topic"] == full(METERING_TOPIC)
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 100
    _ack_dead_letter(stack, letter["messageId"])


def test_a_transient_failure_is_retried_until_the_dependency_is_back_and_posts_once(stack, results, own_topic):
    """Redis down: the usage has its principal and its key claimed, and fails on the
    wallet's lock, inside the ledger service (where a final refusal would be answered)."""
    wallet, k = new_wallet(stack, funded=100), key("use")
    topic = own_topic(["metering_service"], max_deliveries=50)  # never dead-lettered while Redis restarts
    stack.stop_service("redis")
    try:
        data = publish(stack, topic, {"action": "usage", "idempotency_key": k, "request": usage(wallet, 30)})
        failure = _eventually(lambda: bootstrap.action_failures().get(failure_id(data, {})))
        assert failure["last_error"].startswith("dependency_unavailable"), failure
    finally:
        stack.start_service("redis")
    (answer,) = results(k)
    assert answer["status"] == "posted", answer
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 70


def test_a_message_that_keeps_failing_is_dead_lettered_and_replays_once(stack, results, own_topic):
    wallet, k = new_wallet(stack), key("pay")
    body = topup(wallet, k)
    topic = own_topic(["payment_service"])  # dead-lettered after the stack's 5 deliveries
    stack.stop_service("postgres")
    try:
        publish(stack, topic, body)
        listed = _eventually(lambda: [m for m in _cli("list") if m["source_topic"] == full(topic)])
    finally:
        stack.start_service("postgres")
    (letter,) = listed
    assert letter["delivery_count"] == "5" and letter["reason"].startswith(("dependency_unavailable", "database")), (
        letter
    )
    assert postings_with_key(stack, k) == 0

    replayed = _cli("replay", letter["id"])
    assert [r["id"] for r in replayed["replayed"]] == [letter["id"]] and replayed["replayed"][0]["topic"] == full(topic)
    (answer,) = results(k)
    assert answer["status"] == "posted", answer
    assert not [m for m in _cli("list") if m["id"] == letter["id"]]  # acknowledged once replayed
    # the same message once more (as if replayed twice): answered, nothing posted twice
    publish(stack, topic, body)
    assert [a["status"] for a in results(k)] == ["replayed"]
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 500


# Helpers -----------------------------------------------------------------------------


def _rest(stack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.request(method, stack.pubsub_url(path), json=body, timeout=30)
    assert response.status_code in (200, 409), response.text
    return response.json() if response.content else {}


def _waiting(stack, subscription: str) -> list[dict[str, Any]]:
    """The messages waiting now (pulled: acknowledge them or hand them back)."""
    body = {"maxMessages": 100, "returnImmediately": True}
    return _rest(stack, "POST", f"subscriptions/{subscription}:pull", body).get("receivedMessages", [])


def _pull(stack, subscription: str, wanted: Callable[[dict], bool], count: int) -> list[dict[str, Any]]:
    """Pull until `count` wanted messages came; acknowledge every message pulled."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} of {count} messages arrived"
        pulled = _waiting(stack, subscription)
        if pulled:
            _rest(stack, "POST", f"subscriptions/{subscription}:acknowledge", {"ackIds": [m["ackId"] for m in pulled]})
        found += [m["message"] for m in pulled if wanted(m["message"])]
        if not pulled:
            time.sleep(0.2)
    return found


def _dead_letter(stack, wanted: Callable[[dict], bool], subscription: str = "") -> dict[str, Any]:
    """The dead letter `wanted` picks, left in its subscription (the actions' unless
    named; every one pulled is handed back)."""
    subscription = subscription or stack.settings().actions_dead_letter_topic

    def look() -> dict[str, Any] | None:
        received = _waiting(stack, subscription)
        if received:
            ack_ids = [m["ackId"] for m in received]
            _rest(
                stack,
                "POST",
                f"subscriptions/{subscription}:modifyAckDeadline",
                {"ackIds": ack_ids, "ackDeadlineSeconds": 0},
            )
        return next((m["message"] for m in received if wanted(m["message"])), None)

    return _eventually(look)


def _ack_dead_letter(stack, message_id: str, subscription: str = "") -> None:
    """Acknowledge one dead letter (a test's own), handing the others back."""
    subscription = subscription or stack.settings().actions_dead_letter_topic

    def ack() -> bool:
        received = _waiting(stack, subscription)
        mine = [m["ackId"] for m in received if m["message"]["messageId"] == message_id]
        others = [m["ackId"] for m in received if m["message"]["messageId"] != message_id]
        if mine:
            _rest(stack, "POST", f"subscriptions/{subscription}:acknowledge", {"ackIds": mine})
        if others:
            _rest(
                stack,
                "POST",
                f"subscriptions/{subscription}:modifyAckDeadline",
                {"ackIds": others, "ackDeadlineSeconds": 0},
            )
        return bool(mine)

    _eventually(ack)


def _eventually(probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.25)


def _cli(*args: str, exit_code: int = 0) -> Any:
    result = CliRunner().invoke(dead_letters.main, list(args), catch_exceptions=False)
    assert result.exit_code == exit_code, result.output
    if exit_code:
        return result.output
    return json.loads(result.output)
