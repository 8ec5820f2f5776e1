"""The use case behind functions/actions: one pushed message, one outcome.

The message's topic is its principal (issuer "pubsub", subject `projects/P/topics/T`),
held to its grants exactly as an HTTP caller is, through the same LedgerService
methods and idempotency keys. What happens to the message (docs/messages.md):
- a final outcome (posted, replayed, refused, invalid, forbidden) is published to the
  results topic, and the message is acknowledged;
- a transient failure publishes nothing: its reason is recorded (best effort) and
  `Redeliver` is raised, so Pub/Sub delivers it again with the subscription's backoff,
  and dead-letters it after the subscription's maximum of deliveries;
- a malformed message goes to the dead-letter topic at once, with the reason, and is
  acknowledged.
No rate limit: Pub/Sub's own flow to the function is the throttle.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from common import messages
from common.auth.callers import Caller, Principal
from common.errors import LedgerError
from common.messages import Envelope, Malformed, Message
from common.strict_json import validated

log = logging.getLogger("ledger.messages")
ISSUER = "pubsub"
# action -> (its command in common/ledger/commands.py, LedgerService's method)
ACTIONS = {
    "topup": ("TopUp", "top_up"),
    "addon": ("AddOn", "add_on"),
    "bonus": ("Bonus", "bonus"),
    "usage": ("Usage", "usage"),
    "transfer": ("Transfer", "transfer"),
    "void": ("Void", "void"),
    "allocate": ("Allocate", "allocate"),
    "reclaim": ("Reclaim", "reclaim"),
}


class Redeliver(Exception):
    """A transient failure: nothing is answered and Pub/Sub delivers the message again."""


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str: ...


class Failures(Protocol):
    def record(self, failure_id: str, error: str) -> None: ...


class MessageActions:
    def __init__(
        self,
        service: Callable[[], Any],
        principals: Callable[[str, str], Principal | None],
        publisher: Callable[[], Publisher],
        failures: Callable[[], Failures],
        *,
        results_topic: str,
        dead_letter_topic: str,
        batch_max: int,
    ) -> None:
        self._service = service
        self._principals = principals
        self._publisher = publisher
        self._failures = failures
        self._results_topic = results_topic
        self._dead_letter_topic = dead_letter_topic
        self._batch_max = batch_max

    def handle(self, message: Message) -> str:
        """Act on one message; returns what became of it (for the log), or raises
        Redeliver."""
        try:
            envelope = messages.parse(message, self._batch_max)
        except Malformed as malformed:
            self._publish(self._dead_letter_topic, messages.dead_letter(message, malformed.reason))
            return "dead_lettered"
        try:
            data, attributes = self._answer(message, envelope)
        except Exception as error:  # noqa: BLE001 - final outcomes were answered in _answer
            self._failed(message, error)
            raise Redeliver(_described(error)) from error
        self._publish(self._results_topic, (data, attributes))
        return attributes["status"]

    def _answer(self, message: Message, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
        principal = self._principals(ISSUER, message.topic)
        if principal is None:
            reason = f"the topic {message.topic} is not a registered (or active) principal of this ledger"
            if envelope.is_batch:
                return messages.batch_result(message, envelope, messages.forbidden_batch(envelope.records, reason))
            error = {"code": "forbidden", "message": reason, "details": None}
            return messages.single_result(message, envelope, messages.Settled("forbidden", error=error))
        # the message id is the publisher's handle on its request, as X-Request-Id is over HTTP
        caller = Caller(principal, request_id=uuid.uuid4().hex, client_request_id=message.message_id)
        service = self._service()
        if envelope.is_batch:
            intake = service.usage_batch(caller, list(envelope.records))
            retry = next((outcome for outcome in intake.outcomes if not outcome.final), None)
            if retry is not None:  # what did post replays on the next delivery
                raise _TransientRecord(f"record {retry.index}: {retry.code}: {retry.message}")
            return messages.batch_result(message, envelope, intake)
        return messages.single_result(message, envelope, self._settle(service, caller, envelope))

    def _settle(self, service: Any, caller: Caller, envelope: Envelope) -> messages.Settled:
        from common.ledger import commands

        model_name, method = ACTIONS[envelope.action]
        try:
            command = validated(getattr(commands, model_name), envelope.request)
            outcome = getattr(service, method)(caller, command, envelope.key)
        except LedgerError as error:
            if messages.transient(error):
                raise
            return messages.refusal(error)
        return messages.answered(outcome.status, outcome.body, outcome.replayed)

    def _publish(self, topic: str, message: tuple[bytes, dict[str, str]]) -> None:
        try:
            self._publisher().publish(topic, *message)
        except LedgerError as error:  # unanswered: delivered again, and the replay answers alike
            raise Redeliver(_described(error)) from error

    def _failed(self, message: Message, error: Exception) -> None:
        described = _described(error)
        if isinstance(error, LedgerError) and error.status < 500 or isinstance(error, _TransientRecord):
            log.warning("message failed, to be delivered again", extra={"topic": message.topic, "error": described})
        else:
            log.error(
                "message failed, to be delivered again",
                exc_info=not isinstance(error, LedgerError),
                extra={"topic": message.topic, "error": described},
            )
        try:
            self._failures().record(messages.failure_id(message.data, message.attributes), described)
        except Exception:  # noqa: BLE001 - best effort: the store may be what is down
            log.warning("could not record a message's failure", exc_info=True)


class _TransientRecord(LedgerError):
    """A batch with a record that can succeed later (a dependency down, a wallet busy)."""

    status = 503
    code = "record_to_retry"


def _described(error: Exception) -> str:
    """A failure as the operator reads it: a code and message, never a stack trace."""
    if isinstance(error, LedgerError):
        return f"{error.code}: {error.message}"
    return f"unexpected error: {type(error).__name__}"
