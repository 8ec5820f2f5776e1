"""Events older than LEDGER_MAX_EVENT_AGE_S: the decision (common/event_age.py), and
what the Pub/Sub edge does with one (common/cloud_events.py): a tick is acknowledged
with a countable warning, a message with something of its own goes to the dead letters."""

import base64
import logging
from datetime import UTC, datetime

import pytest
from cloudevents.http import CloudEvent

from common import bootstrap, cloud_events
from common.config import Settings
from common.event_age import published_at, too_old

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("2026-11-30T11:59:00Z", datetime(2026, 11, 30, 11, 59, tzinfo=UTC)),
        ("2026-11-30T11:59:00.123456789Z", datetime(2026, 11, 30, 11, 59, 0, 123456, tzinfo=UTC)),
        ("2026-11-30T13:59:00.5+02:00", datetime(2026, 11, 30, 11, 59, 0, 500000, tzinfo=UTC)),
        ("2026-13-30T11:59:00Z", None),
        ("yesterday", None),
        (None, None),
        ("2026-11-30T11:59:00", None),  # no zone: not a time that can be compared
    ],
)
def test_the_publish_time_is_read_as_rfc_3339(time, expected):
    assert published_at(time) == expected


def test_only_an_event_older_than_the_limit_is_too_old():
    assert too_old("2026-11-30T11:58:59Z", 60, NOW) == 61.0
    assert too_old("2026-11-30T11:59:00Z", 60, NOW) is None  # exactly the limit: processed
    assert too_old("2026-11-30T11:59:30Z", 60, NOW) is None


@pytest.mark.parametrize("limit", [0, None, -5])
def test_no_limit_processes_every_event(limit):
    assert too_old("2000-01-01T00:00:00Z", limit, NOW) is None


@pytest.mark.parametrize("time", [None, "garbage", "2026-11-30T12:30:00Z"])
def test_an_event_without_a_readable_time_or_from_the_future_is_processed(time):
    assert too_old(time, 60, NOW) is None


def test_the_default_limit_is_a_day_and_zero_turns_it_off():
    assert Settings().max_event_age_s == 86400
    assert Settings.from_env({"LEDGER_MAX_EVENT_AGE_S": "0"}).max_event_age_s == 0


# The edge ---------------------------------------------------------------------------


def pushed(time, topic="balance-actions", data=b'{"action": "topup"}', **attributes):
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "m-1"}
    return CloudEvent(
        {
            "id": "m-1",
            "source": f"//pubsub.googleapis.com/projects/demo/topics/{topic}",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "time": time,
        },
        {"message": message},
    )


class Recorder:
    def __init__(self):
        self.published = []

    def publish(self, topic, data, attributes):
        self.published.append((topic, data, attributes))
        return "dl-1"


@pytest.fixture
def publisher(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(bootstrap, "message_publisher", lambda: recorder)
    return recorder


def handled():
    calls = []

    def handler(cloud_event):
        calls.append(cloud_event["id"])

    return calls, handler


def test_a_fresh_event_is_handled(publisher):
    calls, handler = handled()
    cloud_events.pubsub_function("lot_expiry")(handler)(pushed(datetime.now(UTC).isoformat()))
    assert calls == ["m-1"] and publisher.published == []


def test_an_old_tick_is_acknowledged_unhandled_with_one_countable_warning(publisher, caplog):
    calls, handler = handled()
    with caplog.at_level(logging.INFO, logger="ledger.events"):
        assert cloud_events.pubsub_function("lot_expiry")(handler)(pushed("2020-01-01T00:00:00Z")) is None
    assert calls == [] and publisher.published == []
    (line,) = [record for record in caplog.records if record.name == "ledger.events"]
    assert line.levelname == "WARNING" and line.event == "event_dropped_too_old"
    assert (line.function, line.message_id, line.max_event_age_s) == ("lot_expiry", "m-1", 86400)
    assert line.age_s > 86400


def test_an_old_balance_action_goes_to_the_dead_letters_with_the_reason_never_lost(publisher, caplog):
    calls, handler = handled()
    keep = cloud_events.to_dead_letters("actions_dead_letter_topic")
    with caplog.at_level(logging.INFO, logger="ledger.events"):
        cloud_events.pubsub_function("actions", keep=keep)(handler)(pushed("2020-01-01T00:00:00Z", marker="x"))
    assert calls == []
    ((topic, data, attributes),) = publisher.published
    assert topic == "balance-actions-dead-letter" and data == b'{"action": "topup"}'
    assert (
        attributes["marker"] == "x" and attributes["dead_letter_source_topic"] == "projects/demo/topics/balance-actions"
    )
    assert "LEDGER_MAX_EVENT_AGE_S" in attributes["dead_letter_reason"]
    (line,) = [record for record in caplog.records if record.name == "ledger.events"]
    assert line.event == "event_dead_lettered_too_old" and line.dead_letter_topic == topic


def test_a_dead_letter_that_cannot_be_published_fails_the_delivery(monkeypatch):
    from common.errors import DependencyUnavailable

    class Down:
        def publish(self, topic, data, attributes):
            raise DependencyUnavailable("pubsub down")

    monkeypatch.setattr(bootstrap, "message_publisher", Down)
    keep = cloud_events.to_dead_letters("actions_dead_letter_topic")
    with pytest.raises(DependencyUnavailable):
        cloud_events.pubsub_function("actions", keep=keep)(handled()[1])(pushed("2020-01-01T00:00:00Z"))


def test_automation_keeps_old_ledger_events_and_drops_old_ticks(publisher):
    keep = cloud_events.to_dead_letters("automation_dead_letter_topic", dropping_ticks_from="automation_tick_topic")
    calls, handler = handled()
    function = cloud_events.pubsub_function("automation", keep=keep)(handler)
    function(pushed("2020-01-01T00:00:00Z", topic="automation-tick"))
    assert publisher.published == []
    function(pushed("2020-01-01T00:00:00Z", topic="ledger-events"))
    assert [topic for topic, _, _ in publisher.published] == ["automation-dead-letter"] and calls == []


@pytest.mark.parametrize("topic", ["some-other-topic", "erp-export-tick"])
def test_automation_keeps_an_old_event_from_a_source_it_does_not_recognise_as_its_tick(publisher, topic):
    keep = cloud_events.to_dead_letters("automation_dead_letter_topic", dropping_ticks_from="automation_tick_topic")
    calls, handler = handled()
    cloud_events.pubsub_function("automation", keep=keep)(handler)(pushed("2020-01-01T00:00:00Z", topic=topic))
    assert [topic for topic, _, _ in publisher.published] == ["automation-dead-letter"] and calls == []


def test_automation_recognises_a_push_from_its_replay_topic_as_a_ledger_event_and_no_other():
    replayed = pushed("2026-11-30T11:59:00Z", topic="automation-replay")
    assert cloud_events.comes_from(replayed, "events_topic", "automation_replay_topic")
    assert not cloud_events.comes_from(replayed, "automation_tick_topic")
    for topic in ["some-other-topic", "automation-replay-2", "automation-tick"]:
        assert not cloud_events.comes_from(pushed("2026-11-30T11:59:00Z", topic=topic), "automation_replay_topic")


def test_automation_keeps_an_old_replayed_event_too(publisher):
    keep = cloud_events.to_dead_letters("automation_dead_letter_topic", dropping_ticks_from="automation_tick_topic")
    calls, handler = handled()
    cloud_events.pubsub_function("automation", keep=keep)(handler)(
        pushed("2020-01-01T00:00:00Z", topic="automation-replay")
    )
    assert [topic for topic, _, _ in publisher.published] == ["automation-dead-letter"] and calls == []
