"""`python -m common.dead_letters [--function actions|automation]`: a function's dead
letters (docs/operations.md); the balance actions' (`actions`) unless told otherwise.

list                   every dead-lettered message: id, source topic, deliveries, why
show ID                one message in full (its data and attributes too)
replay ID... | --all   publish each again as it was first sent, then acknowledge it
                       here: a balance action to its source topic, a ledger event of
                       automation's to automation's own replay topic (see `replay`)

It reads the dead-letter topic's own subscription (the same name as the topic). What it
only lists or shows it hands back at once (a nack), so nothing is lost by looking. Why a
message is there: its `dead_letter_reason` (a malformed one, dead-lettered by the
function), else the failure the function recorded for it while it was being retried
(Firestore, `action_failures`), else "unknown". A replay posts nothing twice: the
message keeps its idempotency key, and each usage record its usage id; a ledger event
replayed to automation fires each rule at most once per event, as any redelivery.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import click

from common import bootstrap, messages
from common.config import get_settings

PULL_BATCH = 100


@dataclass
class DeadLetter:
    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    published_at: str

    def source_topic(self, subscriptions: Any) -> str | None:
        """Where it was first published. For a message Pub/Sub dead-lettered (it carries
        Pub/Sub's attributes), the topic of the subscription it came through, looked up:
        any `dead_letter_*` attribute on it came from its publisher, never from us. Only
        on a message the function dead-lettered itself is `dead_letter_source_topic` ours."""
        if not self.by_pubsub:
            return self.attributes.get(messages.DEAD_LETTER_SOURCE_TOPIC) or None
        subscription = self.attributes.get(messages.PUBSUB_DEAD_LETTER_PREFIX + "Subscription")
        if not subscription:
            return None
        if not subscription.startswith("projects/"):
            project = self.attributes.get(messages.PUBSUB_DEAD_LETTER_PREFIX + "SubscriptionProject")
            subscription = f"projects/{project or get_settings().gcp_project}/subscriptions/{subscription}"
        try:
            return str(subscriptions.get_subscription(request={"subscription": subscription}, timeout=10).topic)
        except Exception:  # noqa: BLE001 - the subscription may be gone: then it can't be replayed
            return None

    @property
    def by_pubsub(self) -> bool:
        """Whether Pub/Sub dead-lettered it (after too many deliveries), not the function."""
        return any(name.startswith(messages.PUBSUB_DEAD_LETTER_PREFIX) for name in self.attributes)

    def reason(self) -> str:
        given = None if self.by_pubsub else self.attributes.get(messages.DEAD_LETTER_REASON)
        if given:
            return given
        try:
            failure = bootstrap.action_failures().get(messages.failure_id(self.data, self.attributes))
        except Exception as error:  # noqa: BLE001 - the listing still shows the rest
            return f"unknown (the failure records could not be read: {type(error).__name__})"
        if failure is None:
            return "unknown"
        return f"{failure.get('last_error')} (failed {failure.get('count')} times, last at {failure.get('at')})"

    def summary(self, subscriptions: Any) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "source_topic": self.source_topic(subscriptions),
            "delivery_count": self.attributes.get(messages.PUBSUB_DEAD_LETTER_PREFIX + "DeliveryCount"),
            "published_at": self.published_at,
            "reason": self.reason(),
        }


def _subscriber() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    return pubsub_v1.SubscriberClient()


# Each function that keeps dead letters: the setting naming its dead-letter topic, whose
# pull subscription has the same name.
DEAD_LETTER_TOPICS = {"actions": "actions_dead_letter_topic", "automation": "automation_dead_letter_topic"}
# Where a function's dead letters are replayed, when not to their source topic: automation's
# come from the events topic, which every subscriber of the ledger's events receives, so
# they go to its own replay topic, pushed to automation alone. Only ledger events are
# replayed there (from the events topic, or from the replay topic itself, when a replay
# was dead-lettered again); anything else is refused.
REPLAY_TOPICS = {"automation": ("automation_replay_topic", ("events_topic", "automation_replay_topic"))}


def replay_topic(function: str, source_topic: str) -> str:
    """The topic to publish a dead letter of `function`'s to, which came from
    `source_topic` (a topic's full name); raises ValueError when it may not be replayed."""
    if function not in REPLAY_TOPICS:
        return source_topic
    settings = get_settings()
    target, sources = REPLAY_TOPICS[function]
    short = source_topic.rpartition("/topics/")[2]
    if short not in {str(getattr(settings, field)) for field in sources}:
        raise ValueError(f"not a ledger event (it came from {source_topic}): {function} replays ledger events only")
    return f"projects/{settings.gcp_project}/topics/{getattr(settings, target)}"


def _subscription_path(subscriber: Any) -> str:
    settings = get_settings()
    topic = getattr(settings, DEAD_LETTER_TOPICS[click.get_current_context().find_root().params["function"]])
    return str(subscriber.subscription_path(settings.gcp_project, topic))


def pull_all(subscriber: Any, path: str) -> list[DeadLetter]:
    """Every message waiting, each once (the newest delivery of it, if one came twice)."""
    found: dict[str, DeadLetter] = {}
    while True:
        # what is waiting now, not a wait for more (deprecated for the service, where a
        # pull can come back empty while messages wait: list again to be sure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            response = subscriber.pull(
                request={"subscription": path, "max_messages": PULL_BATCH, "return_immediately": True}, timeout=30
            )
        fresh = 0
        for received in response.received_messages:
            message = received.message
            fresh += message.message_id not in found
            found[message.message_id] = DeadLetter(
                received.ack_id,
                message.message_id,
                bytes(message.data),
                dict(message.attributes),
                message.publish_time.isoformat() if message.publish_time else "",
            )
        if not fresh:
            return list(found.values())


def _hand_back(subscriber: Any, path: str, letters: list[DeadLetter]) -> None:
    if letters:
        ack_ids = [letter.ack_id for letter in letters]
        subscriber.modify_ack_deadline(request={"subscription": path, "ack_ids": ack_ids, "ack_deadline_seconds": 0})


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group()
@click.option(
    "--function",
    type=click.Choice(sorted(DEAD_LETTER_TOPICS)),
    default="actions",
    show_default=True,
    help="Whose dead letters.",
)
def main(function: str) -> None:
    pass


@main.command("list")
def list_() -> None:
    subscriber = _subscriber()
    path = _subscription_path(subscriber)
    letters = pull_all(subscriber, path)
    try:
        _print([letter.summary(subscriber) for letter in letters])
    finally:
        _hand_back(subscriber, path, letters)


@main.command()
@click.argument("message_id")
def show(message_id: str) -> None:
    subscriber = _subscriber()
    path = _subscription_path(subscriber)
    letters = pull_all(subscriber, path)
    try:
        letter = next((letter for letter in letters if letter.message_id == message_id), None)
        if letter is None:
            click.echo(f"no dead letter {message_id}", err=True)
            sys.exit(1)
        data: Any = letter.data.decode(errors="replace")
        try:
            data = json.loads(data)
        except ValueError:
            pass  # shown as the text it is
        _print({**letter.summary(subscriber), "attributes": letter.attributes, "data": data})
    finally:
        _hand_back(subscriber, path, letters)


@main.command()
@click.argument("message_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
def replay(message_ids: tuple[str, ...], everything: bool) -> None:
    if bool(message_ids) == everything:
        raise click.UsageError("name the messages to replay, or give --all")
    function = click.get_current_context().find_root().params["function"]
    subscriber = _subscriber()
    path = _subscription_path(subscriber)
    letters = pull_all(subscriber, path)
    chosen = letters if everything else [letter for letter in letters if letter.message_id in message_ids]
    report: dict[str, Any] = {"replayed": [], "failed": [], "not_found": []}
    report["not_found"] = sorted(set(message_ids) - {letter.message_id for letter in letters})
    replayed: list[DeadLetter] = []
    for letter in chosen:
        source = letter.source_topic(subscriber)
        if source is None:
            report["failed"].append({"id": letter.message_id, "error": "its source topic is unknown"})
            continue
        try:
            topic = replay_topic(function, source)
        except ValueError as refused:
            report["failed"].append({"id": letter.message_id, "error": str(refused)})
            continue
        try:
            new_id = bootstrap.message_publisher().publish(
                topic, letter.data, messages.original_attributes(letter.attributes)
            )
        except Exception as error:  # noqa: BLE001 - kept in the dead letters; reported
            report["failed"].append({"id": letter.message_id, "error": f"{type(error).__name__}: {error}"})
            continue
        replayed.append(letter)
        report["replayed"].append({"id": letter.message_id, "topic": topic, "new_id": new_id})
    if replayed:
        subscriber.acknowledge(request={"subscription": path, "ack_ids": [letter.ack_id for letter in replayed]})
    _hand_back(subscriber, path, [letter for letter in letters if letter not in replayed])
    _print(report)
    sys.exit(1 if report["failed"] or report["not_found"] else 0)


if __name__ == "__main__":
    main()
