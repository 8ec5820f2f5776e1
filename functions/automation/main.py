"""Pub/Sub function `automation`: event-driven automatic actions (docs/automation.md).

Two kinds of push arrive, told apart by the topic the CloudEvent's source names:
- a ledger event (the events topic, or automation's own replay topic, where an operator
  replays a dead-lettered one; the data is the event's JSON): the threshold rules
  (auto top-up, low-balance notice) of every customer wallet it moved are judged on the
  wallet's balance now;
- Cloud Scheduler's tick (the automation tick topic): the recurring allocations due
  this period, and firings a lost delivery left in flight.

A dependency down fails the delivery, so Pub/Sub brings it again (with backoff, then
to the dead-letter topic): every firing is idempotent per (rule, trigger), so the
redelivery, or an operator's replay of an event that already acted, does nothing twice.
An event that is not a ledger event is logged and acknowledged: a retry could not make
it one. A push from any other topic is neither:
it goes to the automation dead letters (an operator sees it), never run as a tick.
"""

import base64
import json
import logging

import functions_framework

from common import bootstrap, cloud_events, logs
from common.automation import topic_of
from common.config import get_settings
from common.errors import DependencyUnavailable, InProgress

log = logging.getLogger("ledger.automation")
# The Settings fields naming the topics whose pushes are ledger events: the events topic
# and the replay topic an operator replays automation's dead letters to.
LEDGER_EVENT_TOPICS = ("events_topic", "automation_replay_topic")
logs.configure_from_settings()


@functions_framework.cloud_event
@cloud_events.pubsub_function(
    "automation",
    keep=cloud_events.to_dead_letters("automation_dead_letter_topic", dropping_ticks_from="automation_tick_topic"),
)
def automation(cloud_event):
    topic, settings = topic_of(cloud_event["source"]), get_settings()
    try:
        if cloud_events.comes_from(cloud_event, *LEDGER_EVENT_TOPICS):
            event = _ledger_event(cloud_event.data)
            if event is None:
                return
            report = bootstrap.automation_engine().on_event(event)
        elif cloud_events.comes_from(cloud_event, "automation_tick_topic"):
            report = bootstrap.automation_engine().on_tick()
        else:
            _unrecognised(cloud_event, topic, settings.automation_dead_letter_topic)
            return
    except (DependencyUnavailable, InProgress) as error:
        log.error("automatic actions could not run", extra={"topic": topic, "error": error.message})
        raise
    if cloud_events.comes_from(cloud_event, "automation_replay_topic"):
        # the operator's replay answered either way: what it did, or that it did nothing
        # because the event had already acted (docs/operations.md, "Dead letters")
        log.info(
            "replayed ledger event",
            extra={"event": "automation_replayed", "message_id": str(cloud_event["id"]), "topic": topic, **report},
        )
    elif report["acted"]:
        log.info("automatic actions", extra={"topic": topic, **report})


def _ledger_event(data):
    try:
        event = json.loads(base64.b64decode(data["message"]["data"]))
        int(event["transaction_id"])
        return event
    except (KeyError, TypeError, ValueError) as error:
        log.error("not a ledger event: acknowledged, not acted on", extra={"error": f"{type(error).__name__}"})
        return None


def _unrecognised(cloud_event, topic, dead_letter_topic):
    reason = f"not processed: automation takes ledger events and its ticks, not pushes from topic {topic!r}"
    cloud_events.to_dead_letter_topic(cloud_event, dead_letter_topic, reason)  # raises: delivered again
    log.error("a push from an unrecognised topic: moved to the dead letters", extra={"topic": topic})
