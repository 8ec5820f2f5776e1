"""Balance actions as messages, without I/O: the envelope (common/messages.py), and what
the use case (common/message_actions.py) does with each kind of outcome."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common import bootstrap, messages
from common.auth.callers import Grant, Principal
from common.errors import DependencyUnavailable, InProgress, InvalidRequest, NotFound, OutcomeUnknown, Refused
from common.idempotency import Outcome
from common.intake import IntakeResult, RecordOutcome
from common.message_actions import MessageActions, Redeliver
from common.messages import Malformed, Message

TOPIC = "projects/p/topics/balance-actions"
TOPUP = {"wallet_id": 16, "asset": "IDR", "amount": 500, "external_ref": "psp-1"}


def message(body: Any, **attributes: str) -> Message:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(TOPIC, "m-1", data, attributes)


def single(**fields: Any) -> dict[str, Any]:
    return {"action": "topup", "idempotency_key": "k-1", "request": TOPUP, **fields}


# The envelope ---------------------------------------------------------------------------


def test_a_pushed_events_source_names_the_topic():
    assert messages.topic_of("//pubsub.googleapis.com/projects/p/topics/t") == "projects/p/topics/t"
    with pytest.raises(Malformed):
        messages.topic_of("//pubsub.googleapis.com/")


def test_a_single_action_takes_its_key_from_the_data_or_an_attribute():
    assert messages.parse(message(single()), 1000).key == "k-1"
    without = {"action": "topup", "request": TOPUP}
    envelope = messages.parse(message(without, idempotency_key="k-2", correlation_id="c"), 1000)
    assert (envelope.key, envelope.correlation_id, envelope.request) == ("k-2", "c", TOPUP)
    assert messages.parse(message(single(), idempotency_key="k-1"), 1000).key == "k-1"  # the same twice is fine


@pytest.mark.parametrize(
    ("data", "attributes", "reason"),
    [
        (b"not json", {}, "not valid JSON"),
        (b"[1, 2]", {}, "must be a JSON object"),
        (b'{"action": "topup", "action": "void"}', {}, "a key appears twice"),
        (b"[" * 40 + b"]" * 40, {}, "levels deep"),
        (single(action="mint"), {}, "unknown action 'mint'"),
        (single(extra=1), {}, "unknown fields ['extra']"),
        ({"action": "topup", "request": TOPUP}, {}, "needs an idempotency_key"),
        (single(idempotency_key=""), {}, "needs an idempotency_key"),
        (single(idempotency_key="é"), {}, "needs an idempotency_key"),
        (single(idempotency_key=7), {}, "must be a string"),
        (single(), {"idempotency_key": "k-other"}, "field and attribute differ"),
        (single(request=[TOPUP]), {}, "must be a JSON object"),
        ({"action": "usage_batch", "batch_id": "b", "records": []}, {}, "1 to 3 usage bodies"),
        ({"action": "usage_batch", "batch_id": "b", "records": [{}] * 4}, {}, "1 to 3 usage bodies"),
        ({"action": "usage_batch", "batch_id": "b", "records": {}}, {}, "1 to 3 usage bodies"),
        ({"action": "usage_batch", "records": [{}]}, {}, "needs a batch_id"),
        ({"action": "usage_batch", "batch_id": "b", "records": [{}], "request": {}}, {}, "unknown fields"),
        (b" " * (messages.MAX_DATA_BYTES + 1), {}, "over 1048576 bytes"),
    ],
)
def test_a_malformed_message_says_why(data, attributes, reason):
    with pytest.raises(Malformed) as raised:
        messages.parse(message(data, **attributes), batch_max=3)
    assert reason in raised.value.reason


@pytest.mark.parametrize("key", ["auto-topup:7:event:12", "auto-allocate:7:2026-11-01:16", "usage-id:ab12"])
def test_a_message_may_not_use_a_key_the_ledger_derives_for_itself(key):
    with pytest.raises(Malformed) as raised:
        messages.parse(message(single(idempotency_key=key)), 1000)
    assert "the ledger reserves them" in raised.value.reason
    with pytest.raises(Malformed):
        messages.parse(message({"action": "topup", "request": TOPUP}, idempotency_key=key), 1000)


def test_a_batch_keeps_its_records_in_order():
    records = [{"usage_id": "a"}, "not even an object"]
    envelope = messages.parse(message({"action": "usage_batch", "batch_id": "b-1", "records": records}), 1000)
    assert envelope.is_batch and envelope.key == "b-1" and envelope.records == tuple(records)


@pytest.mark.parametrize(
    "attribute",
    ["dead_letter_source_topic", "dead_letter_reason", "dead_letter_other", "CloudPubSubDeadLetterSourceSubscription"],
)
def test_a_message_carrying_an_attribute_reserved_for_dead_letters_is_malformed(attribute):
    """Else it could name another topic as the source a replay publishes it to."""
    with pytest.raises(Malformed) as raised:
        messages.parse(message(single(), **{attribute: "projects/p/topics/balance-actions"}), 1000)
    assert "reserved for dead-lettering" in raised.value.reason


def test_a_dead_letter_replaces_the_reserved_attributes_a_publisher_sent():
    forged = message(single(), dead_letter_source_topic="projects/p/topics/other", dead_letter_x="y", marker="m")
    _, attributes = messages.dead_letter(forged, "why")
    assert attributes == {"marker": "m", "dead_letter_reason": "why", "dead_letter_source_topic": TOPIC}


class Subscriptions:
    """The subscriber API's get_subscription, as the operator's command calls it."""

    def __init__(self, topics: dict[str, str]) -> None:
        self.topics = topics

    def get_subscription(self, request: dict[str, str], timeout: float) -> Any:
        return type("Subscription", (), {"topic": self.topics[request["subscription"]]})()


def _letter(**attributes: str) -> Any:
    from common.dead_letters import DeadLetter

    return DeadLetter("ack", "m-1", b"{}", attributes, "")


def test_a_letter_pubsub_dead_lettered_replays_to_its_subscriptions_topic_whatever_it_claims(monkeypatch):
    metering = "projects/p/topics/metering-usage"
    subscriptions = Subscriptions({"projects/p/subscriptions/actions-metering-usage": metering})
    letter = _letter(
        dead_letter_source_topic=TOPIC,
        dead_letter_reason="claimed",
        CloudPubSubDeadLetterSourceSubscription="actions-metering-usage",
        CloudPubSubDeadLetterSourceSubscriptionProject="p",
        CloudPubSubDeadLetterSourceDeliveryCount="5",
    )
    assert letter.source_topic(subscriptions) == metering
    monkeypatch.setattr(bootstrap, "action_failures", lambda: {})  # no failure recorded for it
    assert letter.reason() == "unknown"
    assert (
        _letter(dead_letter_source_topic=TOPIC, CloudPubSubDeadLetterSourceDeliveryCount="5").source_topic(
            subscriptions
        )
        is None
    )  # no subscription named: unknown, never the claim


def test_a_letter_the_function_dead_lettered_itself_names_its_source():
    letter = _letter(dead_letter_source_topic=TOPIC, dead_letter_reason="not JSON")
    assert letter.source_topic(Subscriptions({})) == TOPIC and letter.reason() == "not JSON"


def test_automation_replays_ledger_events_to_its_own_replay_topic_and_nothing_else():
    from common.config import get_settings
    from common.dead_letters import replay_topic

    replays_to = f"projects/{get_settings().gcp_project}/topics/automation-replay"
    assert replay_topic("automation", "projects/p/topics/ledger-events") == replays_to
    assert replay_topic("automation", "projects/p/topics/automation-replay") == replays_to  # dead-lettered again
    for source in ["projects/p/topics/automation-tick", "projects/p/topics/some-other-topic"]:
        with pytest.raises(ValueError, match="ledger events only"):
            replay_topic("automation", source)
    assert replay_topic("actions", "projects/p/topics/metering-usage") == "projects/p/topics/metering-usage"


# Outcomes and the messages sent back ---------------------------------------------------


def test_what_can_succeed_later_is_transient_and_what_cannot_is_final():
    assert messages.transient(DependencyUnavailable("down")) and messages.transient(OutcomeUnknown("?"))
    assert messages.transient(InProgress("busy")) and messages.transient(RuntimeError("a bug"))
    assert messages.refusal(Refused("no", code="insufficient_funds")).status == "refused"
    assert messages.refusal(InvalidRequest("bad", code="validation_failed")).status == "invalid"
    assert messages.refusal(NotFound("hidden", code="wallet_not_found")).status == "forbidden"
    assert not messages.transient(Refused("no"))


def test_a_stored_refusal_replays_as_refused_and_a_posting_as_posted_or_replayed():
    refusal = {"error": {"code": "insufficient_funds", "message": "m", "details": None}}
    assert messages.answered(422, refusal, replayed=True) == messages.Settled("refused", error=refusal["error"])
    assert messages.answered(201, {"transaction": {"id": 1}}, replayed=False).status == "posted"
    assert messages.answered(201, {"transaction": {"id": 1}}, replayed=True).status == "replayed"


def test_a_result_is_keyed_for_the_publisher_to_filter_and_match():
    m = message(single(), correlation_id="order-7")
    envelope = messages.parse(m, 1000)
    data, attributes = messages.single_result(m, envelope, messages.Settled("posted", transaction={"id": 3}))
    assert attributes == {
        "source_topic": TOPIC,
        "action": "topup",
        "key": "k-1",
        "status": "posted",
        "correlation_id": "order-7",
    }
    assert json.loads(data) == {
        "source_topic": TOPIC,
        "message_id": "m-1",
        "action": "topup",
        "idempotency_key": "k-1",
        "correlation_id": "order-7",
        "status": "posted",
        "transaction": {"id": 3},
        "error": None,
    }


def test_a_dead_letter_keeps_the_message_and_its_failure_id_survives_dead_lettering():
    m = message(b"not json", marker="x")
    data, attributes = messages.dead_letter(m, "the message's data is not valid JSON")
    assert data == b"not json"
    assert attributes == {
        "marker": "x",
        "dead_letter_reason": "the message's data is not valid JSON",
        "dead_letter_source_topic": TOPIC,
    }
    by_pubsub = {"marker": "x", "CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    assert messages.failure_id(b"d", by_pubsub) == messages.failure_id(b"d", {"marker": "x"})
    assert messages.failure_id(b"d", {"marker": "y"}) != messages.failure_id(b"d", {"marker": "x"})


def _bad_metadata_batch() -> tuple[Message, list[Any]]:
    """1,000 records under the data limit, each with 32 metadata values no usage takes:
    each value is three problems, so the problems alone outgrow a Pub/Sub message."""
    metadata = {f"{'k' * 12}{i:02}": 1.5 for i in range(32)}
    records = [
        {"wallet_id": 16, "asset": "IDR", "amount": 1, "usage_id": f"u-{i}", "product": "p", "metadata": metadata}
        for i in range(1000)
    ]
    batch = message({"action": "usage_batch", "batch_id": "b-big", "records": records})
    assert len(batch.data) < messages.MAX_DATA_BYTES
    return batch, records


def test_a_batch_whose_problems_outgrow_a_message_still_gets_a_result_that_fits():
    from common.service import _parse_usage

    batch, records = _bad_metadata_batch()
    intake = IntakeResult([_parse_usage(i, record) for i, record in enumerate(records)])
    unbounded = json.dumps([outcome.as_dict() for outcome in intake.outcomes]).encode()
    assert len(unbounded) > 10 * 1000 * 1000  # what Pub/Sub would refuse to publish
    data, _ = messages.batch_result(batch, messages.parse(batch, 1000), intake)
    assert len(data) <= messages.MAX_RESULT_BYTES
    body = json.loads(data)
    assert body["truncated"] is None and body["counts"] == {"invalid": 1000}
    first = body["outcomes"][0]
    assert (first["usage_id"], first["status"], first["error"]["code"]) == ("u-0", "invalid", "validation_failed")
    assert len(first["error"]["details"]) == messages.MAX_PROBLEMS and first["error"]["more_details"] == 32 * 3 - 5


def test_a_result_over_the_cap_drops_details_then_messages_then_outcomes(monkeypatch):
    long = "x" * 1000
    outcomes = [RecordOutcome(i, long, "invalid", "validation_failed", long, [{"field": long}] * 9) for i in range(20)]
    batch = message({"action": "usage_batch", "batch_id": "b", "records": [{}] * 20})
    envelope = messages.parse(batch, 1000)
    sizes = {}
    for cut in (None, "details", "message", "outcomes"):
        data, _ = messages.batch_result(batch, envelope, IntakeResult(outcomes))
        body = json.loads(data)
        assert body["truncated"] == cut and body["counts"] == {"invalid": 20} and len(data) <= messages.MAX_RESULT_BYTES
        sizes[cut] = len(data)
        monkeypatch.setattr(messages, "MAX_RESULT_BYTES", len(data) - 1)
    assert body["outcomes"] == []
    assert sizes[None] < 20 * 2500  # each text clipped to 200, each error to 5 problems


# The use case --------------------------------------------------------------------------


class Published:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict, dict]] = []
        self.fail = fail

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        if self.fail:
            raise DependencyUnavailable("pubsub down", details={"service": "pubsub"})
        self.sent.append((topic, data if topic == "dead" else json.loads(data), attributes))
        return "id"


class Failures:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str]] = []

    def record(self, failure_id: str, error: str) -> None:
        self.recorded.append((failure_id, error))


class Service:
    """Answers as told; keeps the callers it saw."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.callers: list[Any] = []

    def top_up(self, caller: Any, cmd: Any, key: str) -> Outcome:
        self.callers.append(caller)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]

    def usage_batch(self, caller: Any, records: list[Any]) -> IntakeResult:
        return self.answer  # type: ignore[no-any-return]


PRINCIPAL = Principal(
    "balance-actions", "pubsub", TOPIC, "service", "payments", grants=(Grant("p", frozenset({"topup"}), "all"),)
)


def actions(service: Service, principal: Principal | None = PRINCIPAL, publisher: Published | None = None):
    published, failures = publisher or Published(), Failures()
    use_case = MessageActions(
        lambda: service,
        lambda issuer, subject: principal if (issuer, subject) == ("pubsub", TOPIC) else None,
        lambda: published,
        lambda: failures,
        results_topic="results",
        dead_letter_topic="dead",
        batch_max=1000,
    )
    return use_case, published, failures


def test_a_posting_is_answered_on_the_results_topic_as_the_topics_principal():
    service = Service(Outcome(201, {"transaction": {"id": 9}}))
    use_case, published, _ = actions(service)
    assert use_case.handle(message(single())) == "posted"
    ((topic, body, attributes),) = published.sent
    assert topic == "results" and body["transaction"] == {"id": 9} and attributes["key"] == "k-1"
    assert service.callers[0].principal == PRINCIPAL and service.callers[0].client_request_id == "m-1"


@pytest.mark.parametrize(
    ("answer", "status"),
    [(Refused("frozen", code="wallet_frozen"), "refused"), (InvalidRequest("bad", code="invalid_posting"), "invalid")],
)
def test_a_final_refusal_is_answered_and_acknowledged(answer, status):
    use_case, published, failures = actions(Service(answer))
    assert use_case.handle(message(single())) == status
    assert published.sent[0][1]["error"]["code"] == answer.code and not failures.recorded


def test_an_invalid_request_body_is_an_invalid_result_not_a_dead_letter():
    use_case, published, _ = actions(Service(None))
    assert use_case.handle(message(single(request={"wallet_id": 16}))) == "invalid"
    assert published.sent[0][1]["error"]["code"] == "validation_failed"


def test_a_topic_that_is_no_principal_is_forbidden_for_a_single_action_and_every_record():
    use_case, published, _ = actions(Service(None), principal=None)
    assert use_case.handle(message(single())) == "forbidden"
    batch = {"action": "usage_batch", "batch_id": "b", "records": [{"usage_id": "u1"}, 5]}
    assert use_case.handle(message(batch)) == "batch"
    outcomes = published.sent[1][1]["outcomes"]
    assert [(o["usage_id"], o["status"]) for o in outcomes] == [("u1", "forbidden"), (None, "forbidden")]


@pytest.mark.parametrize(
    "error", [DependencyUnavailable("down"), OutcomeUnknown("?"), InProgress("busy"), KeyError("bug")]
)
def test_a_transient_failure_publishes_nothing_records_why_and_is_delivered_again(error):
    use_case, published, failures = actions(Service(error))
    with pytest.raises(Redeliver):
        use_case.handle(message(single()))
    assert published.sent == []
    ((failure_id, why),) = failures.recorded
    assert failure_id == messages.failure_id(message(single()).data, {})
    assert "Traceback" not in why and (error.__class__.__name__ in why or why.startswith(getattr(error, "code", "")))


def test_a_batch_with_a_record_to_retry_is_delivered_again_whole():
    intake = IntakeResult(
        [
            RecordOutcome(0, "u1", "posted", transaction_id=1),
            RecordOutcome(1, "u2", "retry", "dependency_unavailable", "down"),
        ]
    )
    use_case, published, failures = actions(Service(intake))
    with pytest.raises(Redeliver):
        use_case.handle(message({"action": "usage_batch", "batch_id": "b", "records": [{}, {}]}))
    assert published.sent == [] and "record 1" in failures.recorded[0][1]


def test_a_malformed_message_goes_to_the_dead_letters_and_is_acknowledged():
    use_case, published, _ = actions(Service(None))
    assert use_case.handle(message(b"{", marker="x")) == "dead_lettered"
    ((topic, data, attributes),) = published.sent
    assert (
        topic == "dead"
        and data == b"{"
        and attributes["marker"] == "x"
        and "not valid JSON" in attributes["dead_letter_reason"]
    )


def test_a_result_that_cannot_be_published_is_delivered_again():
    use_case, _, _ = actions(Service(Outcome(201, {"transaction": {"id": 9}})), publisher=Published(fail=True))
    with pytest.raises(Redeliver):
        use_case.handle(message(single()))


# A topic as a principal ------------------------------------------------------------------


def test_the_operators_api_can_register_a_topic_as_a_principal():
    from common.auth.commands import CreatePrincipal

    topic = CreatePrincipal.model_validate(
        {"id": "balance-actions", "issuer": "pubsub", "subject": TOPIC, "kind": "service", "tenant": "payments"}
    )
    assert (topic.issuer, topic.subject) == ("pubsub", TOPIC)


def test_no_token_issuer_may_be_the_topics_issuer():
    """Else a token naming a topic as its subject would post as that topic's publisher."""
    from common.auth.tokens import parse_issuers

    trusted = [{"issuer": "pubsub", "certs_url": "https://example.com/certs", "audiences": ["a"]}]
    with pytest.raises(ValueError, match="topics' issuer"):
        parse_issuers(json.dumps(trusted))
