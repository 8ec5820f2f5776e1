"""The edge shared by every Pub/Sub-delivered function, as common/http.py's `endpoint`
is for HTTP ones: the event's trace bound to its log lines, and events older than
LEDGER_MAX_EVENT_AGE_S kept from the handler.

An old scheduler tick is acknowledged without running, with one warning line whose
`event` field is `event_dropped_too_old` (a log-based metric counts them): the next
tick does the same work. A message that carries something of its own (a balance
action, a ledger event for automation) is never dropped: it goes to the function's
dead-letter topic with the reason, where an operator sees and can replay it, and only
then is acknowledged. If that publish fails, the delivery fails and Pub/Sub brings it
again.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from common import bootstrap, event_age, tracing
from common.config import get_settings

log = logging.getLogger("ledger.events")
DROPPED = "event_dropped_too_old"
DEAD_LETTERED = "event_dead_lettered_too_old"
# Which dead-letter topic keeps a too-old event (None: it may be dropped).
Keeper = Callable[[Any], str | None]


def pubsub_function(name: str, *, keep: Keeper | None = None) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Wrap a CloudEvent handler (below `@functions_framework.cloud_event`)."""

    def decorate(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @wraps(handler)
        def wrapped(cloud_event: Any) -> Any:
            settings = get_settings()
            trace = tracing.from_traceparent(cloud_event.get("traceparent"))
            with tracing.bound(trace, settings.gcp_project):
                age_s = event_age.too_old(cloud_event.get("time"), settings.max_event_age_s)
                if age_s is None:
                    return handler(cloud_event)
                _too_old(name, cloud_event, age_s, settings.max_event_age_s, keep(cloud_event) if keep else None)
                return None

        return wrapped

    return decorate


def _too_old(name: str, cloud_event: Any, age_s: float, max_age_s: float, dead_letter_topic: str | None) -> None:
    fields = {
        "function": name,
        "age_s": round(age_s, 1),
        "max_event_age_s": max_age_s,
        "message_id": str(cloud_event.get("id")),
        "source": str(cloud_event.get("source")),
    }
    if dead_letter_topic is None:
        log.warning("event older than LEDGER_MAX_EVENT_AGE_S: acknowledged, not processed",
                    extra={"event": DROPPED, **fields})  # fmt: skip
        return
    reason = f"not processed: published {age_s:.0f} s ago, past LEDGER_MAX_EVENT_AGE_S ({max_age_s:g} s) of {name}"
    to_dead_letter_topic(cloud_event, dead_letter_topic, reason)
    log.warning("event older than LEDGER_MAX_EVENT_AGE_S: moved to the dead letters",
                extra={"event": DEAD_LETTERED, "dead_letter_topic": dead_letter_topic, **fields})  # fmt: skip


def to_dead_letter_topic(cloud_event: Any, dead_letter_topic: str, reason: str) -> None:
    """Publish the pushed message to `dead_letter_topic` with why; raises when it cannot,
    so the delivery fails and Pub/Sub brings it again."""
    data, attributes = dead_letter(cloud_event, reason)
    bootstrap.message_publisher().publish(dead_letter_topic, data, attributes)


def dead_letter(cloud_event: Any, reason: str) -> tuple[bytes, dict[str, str]]:
    """The pushed message as it came, with why and where from (common/messages.py's shape,
    so the operator's dead-letter command reads and replays it)."""
    from common.messages import Malformed, Message, topic_of
    from common.messages import dead_letter as letter

    pushed = (cloud_event.data or {}).get("message") or {} if isinstance(cloud_event.data, dict) else {}
    try:
        topic = topic_of(str(cloud_event.get("source")))
    except Malformed:
        topic = str(cloud_event.get("source"))[:200]
    message = Message(
        topic=topic,
        message_id=str(cloud_event.get("id")),
        data=_decoded(pushed.get("data") or ""),
        attributes={str(k): str(v) for k, v in (pushed.get("attributes") or {}).items()},
    )
    return letter(message, reason)


def _decoded(data: str) -> bytes:
    try:
        return base64.b64decode(data)
    except ValueError:  # not base64 (binascii.Error): kept as it came rather than lost
        return str(data).encode()


def to_dead_letters(topic_setting: str, dropping_ticks_from: str | None = None) -> Keeper:
    """A keeper for `pubsub_function`: too-old events go to the dead-letter topic the
    setting `topic_setting` names. With `dropping_ticks_from` (a setting naming the
    function's tick topic), events from exactly that topic are ticks and may be dropped;
    everything else, from whatever source, is kept: a tick is recognised, never assumed."""

    def keeper(cloud_event: Any) -> str | None:
        if dropping_ticks_from is not None and comes_from(cloud_event, dropping_ticks_from):
            return None
        return str(getattr(get_settings(), topic_setting))

    return keeper


def comes_from(cloud_event: Any, *topic_settings: str) -> bool:
    """Whether a pushed event came from one of the topics these Settings fields name:
    what a push is, is recognised from its topic, never assumed from its not being
    something else. Automation takes ledger events from the events topic and from its
    own replay topic alike, and a replayed event's age counts from the replay's publish."""
    settings = get_settings()
    topic = source_topic(cloud_event)
    return topic is not None and topic in {str(getattr(settings, field)) for field in topic_settings}


def source_topic(cloud_event: Any) -> str | None:
    """The short name of the topic a pushed event came from; None if its source names none."""
    _, found, topic = str(cloud_event.get("source") or "").rpartition("/topics/")
    return topic if found and topic else None
