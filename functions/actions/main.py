"""Pub/Sub function `actions`: balance actions published as messages (docs/messages.md).

Each publishing service has its own topic, pushed here; the topic is the principal.
A final outcome is published to the results topic and the message acknowledged; a
malformed one goes to the dead letters and is acknowledged; a transient failure raises,
so Pub/Sub delivers the message again with its backoff, and dead-letters it after the
subscription's maximum of deliveries.
"""

import base64
import logging

import functions_framework

from common import bootstrap, cloud_events, logs
from common.message_actions import Redeliver
from common.messages import Malformed, Message, topic_of

log = logging.getLogger("ledger.actions")
logs.configure_from_settings()


@functions_framework.cloud_event
@cloud_events.pubsub_function("actions", keep=cloud_events.to_dead_letters("actions_dead_letter_topic"))
def actions(cloud_event):
    pushed = (cloud_event.data or {}).get("message") or {}
    try:
        topic = topic_of(cloud_event["source"])
    except Malformed as error:  # a push subscription without the topic in its endpoint: a deployment bug
        log.error("message from an unknown topic", extra={"error": error.reason})
        raise
    message = Message(
        topic=topic,
        message_id=str(cloud_event["id"]),
        data=base64.b64decode(pushed.get("data") or ""),
        attributes=dict(pushed.get("attributes") or {}),
    )
    try:
        became = bootstrap.message_actions().handle(message)
    except Redeliver as error:
        log.warning(
            "message to be delivered again", extra={"topic": topic, "id": message.message_id, "error": str(error)}
        )
        raise
    log.info("message", extra={"topic": topic, "id": message.message_id, "outcome": became})
