"""`python -m common.dead_letters [--function actions|automation]`: a function's dead
letters (docs/operations.md); the balance actions' (`actions`) unless told otherwise.

list                   every dead-lettered message: id, source topic, deliveries, why
show ID                one message in full (its data and attributes too)
replay ID... | --all   publish each again to its source topic as it was first sent,
                       then acknowledge it here (the actions' alone: see `replay`)

It reads the dead-letter topic's own subscription (the same name as the topic). What it
only lists or shows it hands back at once (a nack), so nothing is lost by looking. Why a
message is there: its `dead_letter_reason` (a malformed one, dead-lettered by the
function), else the failure the function recorded for it while it was being retried
(Firestore, `action_failures`), else "unknown". A replay posts nothing twice: the
message keeps its idempotency key, and each usage record its usage id.
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
    if click.get_current_context().find_root().params["function"] != "actions":
        # Its source is the events topic: published there again, it would reach every
        # subscriber of the ledger's events, not automation alone (docs/operations.md).
        raise click.UsageError(
            "automation's dead letters are listed and shown, not replayed: their source topic is the ledger's"
            " events, which every subscriber of it would receive again"
        )
    subscriber = _subscriber()
    path = _subscription_path(subscriber)
    letters = pull_all(subscriber, path)
    chosen = letters if everything else [letter for letter in letters if letter.message_id in message_ids]
    report: dict[str, Any] = {"replayed": [], "failed": [], "not_found": []}
    report["not_found"] = sorted(set(message_ids) - {letter.message_id for letter in letters})
    replayed: list[DeadLetter] = []
    for letter in chosen:
        topic = letter.source_topic(subscriber)
        if topic is None:
            report["failed"].append({"id": letter.message_id, "error": "its source topic is unknown"})
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
