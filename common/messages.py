"""Balance actions as Pub/Sub messages (docs/messages.md): the envelope a publisher
sends, what an outcome means for the message, and the messages sent back (a result, a
dead letter). Pure: no client, no I/O; common/message_actions.py does the rest.

A message is one action (`{"action", "idempotency_key", "request"}`) or a batch of
usage (`{"action": "usage_batch", "batch_id", "records"}`). Its topic is its principal.
An envelope that can never be read (not JSON, an unknown action, no key...) is
`Malformed`: it goes to the dead letters at once, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from common.errors import DependencyUnavailable, Forbidden, InProgress, InvalidRequest, LedgerError, NotFound
from common.idempotency import refuse_reserved_key, validate_key
from common.intake import IntakeResult, RecordOutcome
from common.strict_json import loads_object

SINGLE_ACTIONS = ("topup", "addon", "bonus", "usage", "transfer", "void", "allocate", "reclaim")
BATCH_ACTION = "usage_batch"
KEY_ATTRIBUTE = "idempotency_key"
CORRELATION_ATTRIBUTE = "correlation_id"
DEAD_LETTER_REASON = "dead_letter_reason"
DEAD_LETTER_SOURCE_TOPIC = "dead_letter_source_topic"
# What Pub/Sub adds to a message it dead-letters after too many deliveries.
PUBSUB_DEAD_LETTER_PREFIX = "CloudPubSubDeadLetterSource"
# Attribute names only dead-lettering writes (ours, then Pub/Sub's). A publisher that
# sent them could name another topic as the source a replay goes to, so a message
# arriving with one is malformed, and every dead letter drops them before adding its own.
RESERVED_ATTRIBUTE_PREFIXES = ("dead_letter_", "CloudPubSubDeadLetter")
# 1,000 usage records of a few hundred bytes each, with room to spare; Pub/Sub itself
# takes up to 10 MB, which would only be memory spent on a message no one should send.
MAX_DATA_BYTES = 1024 * 1024
# A result must fit in one Pub/Sub message (10 MB), else its publish fails on every
# delivery and records that posted never get theirs. A batch under MAX_DATA_BYTES can
# still fail with far more text than it sent (each bad metadata key is several problems,
# each naming the key), so each error is clipped, and the whole result capped below 10 MB.
MAX_RESULT_BYTES = 8 * 1000 * 1000
MAX_PROBLEMS = 5  # per error: the first few say what to fix
MAX_TEXT = 200  # characters of any text in an error, or of a usage id that was echoed
_SOURCE = re.compile(r"//pubsub\.googleapis\.com/(projects/[^/]+/topics/[^/]+)")
_ENVELOPE_FIELDS = {
    "single": {"action", "idempotency_key", "request"},
    BATCH_ACTION: {"action", "batch_id", "records"},
}


class Malformed(Exception):
    """A message that can never be acted on as sent; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Message:
    """A message as pushed: its topic's full name (`projects/P/topics/T`), id, data and
    attributes."""

    topic: str
    message_id: str
    data: bytes
    attributes: dict[str, str]


@dataclass(frozen=True)
class Envelope:
    action: str
    key: str  # the idempotency key of a single action, the batch id of a batch
    correlation_id: str | None
    request: Any = None  # a single action's body, as HTTP takes it
    records: tuple[Any, ...] = ()  # a batch's usage bodies

    @property
    def is_batch(self) -> bool:
        return self.action == BATCH_ACTION


def topic_of(source: str) -> str:
    """The topic's full name from a pushed event's source
    (`//pubsub.googleapis.com/projects/P/topics/T`)."""
    match = _SOURCE.fullmatch(source or "")
    if match is None:
        raise Malformed(f"the event's source {source[:200]!r} names no Pub/Sub topic")
    return match.group(1)


def reserved(attribute: str) -> bool:
    return attribute.startswith(RESERVED_ATTRIBUTE_PREFIXES)


def parse(message: Message, batch_max: int) -> Envelope:
    if len(message.data) > MAX_DATA_BYTES:
        raise Malformed(f"the data is over {MAX_DATA_BYTES} bytes")
    forged = sorted(name for name in message.attributes if reserved(name))
    if forged:
        names = [name[:100] for name in forged[:10]]
        raise Malformed(f"attributes {names} are reserved for dead-lettering: a publisher may not set them")
    try:
        body = loads_object(message.data, what="the message's data")
    except InvalidRequest as error:
        raise Malformed(error.message) from None
    action = body.get("action")
    if action not in SINGLE_ACTIONS and action != BATCH_ACTION:
        known = ", ".join((*SINGLE_ACTIONS, BATCH_ACTION))
        raise Malformed(f"unknown action {str(action)[:50]!r}: use one of {known}")
    fields = _ENVELOPE_FIELDS[BATCH_ACTION if action == BATCH_ACTION else "single"]
    extra = sorted(set(body) - fields)
    if extra:
        raise Malformed(f"unknown fields {extra[:10]} for action {action!r}: it takes {sorted(fields)}")
    correlation_id = message.attributes.get(CORRELATION_ATTRIBUTE)
    if action == BATCH_ACTION:
        return Envelope(action, _batch_id(body), correlation_id, records=_records(body, batch_max))
    if not isinstance(body.get("request"), dict):
        raise Malformed("the action's request must be a JSON object (the HTTP function's body)")
    return Envelope(action, _key(body, message.attributes), correlation_id, request=body["request"])


def _key(body: dict[str, Any], attributes: dict[str, str]) -> str:
    in_data, in_attributes = body.get("idempotency_key"), attributes.get(KEY_ATTRIBUTE)
    if in_data is not None and not isinstance(in_data, str):
        raise Malformed("idempotency_key must be a string")
    if in_data is not None and in_attributes is not None and in_data != in_attributes:
        raise Malformed("the idempotency_key field and attribute differ")
    try:
        key = validate_key(in_data if in_data is not None else in_attributes)
    except InvalidRequest:
        raise Malformed(
            "a balance action needs an idempotency_key (field or attribute) of 1-255 printable ASCII characters"
        ) from None
    try:
        refuse_reserved_key(key)
    except InvalidRequest as error:
        raise Malformed(error.message) from None
    return key


def _batch_id(body: dict[str, Any]) -> str:
    batch_id = body.get("batch_id")
    try:
        return validate_key(batch_id if isinstance(batch_id, str) else None)
    except InvalidRequest:
        raise Malformed("a usage batch needs a batch_id of 1-255 printable ASCII characters") from None


def _records(body: dict[str, Any], batch_max: int) -> tuple[Any, ...]:
    records = body.get("records")
    if not isinstance(records, list) or not 1 <= len(records) <= batch_max:
        raise Malformed(f"a usage batch needs records: a list of 1 to {batch_max} usage bodies")
    return tuple(records)


# Outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """A single action's final outcome: the result it gets."""

    status: str  # posted, replayed, refused, invalid or forbidden
    transaction: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def transient(error: Exception) -> bool:
    """Whether a retry can succeed: a dependency down, or contention (another copy holds
    the key or the wallet). Anything unexpected is retried too, and dead-lettered if it
    keeps failing: an operator sees it, where a final result would have buried a bug."""
    if isinstance(error, DependencyUnavailable | InProgress):
        return True
    return not isinstance(error, LedgerError) or error.status >= 500


def refusal(error: LedgerError) -> Settled:
    """The final outcome of an error that no retry changes (see `transient`)."""
    return _settled_error(error.status, error.body()["error"])


def answered(status: int, body: dict[str, Any], replayed: bool) -> Settled:
    """The final outcome of a service's answer: a posting, or a stored refusal replayed."""
    if status < 400:
        return Settled("replayed" if replayed else "posted", transaction=body["transaction"])
    return _settled_error(status, body["error"])


def _settled_error(status: int, error: dict[str, Any]) -> Settled:
    # 404 as 403: outside the principal's boundary, a wallet answers as if it did not
    # exist (common/auth/callers.py), so neither says more than "not yours to move".
    kind = "forbidden" if status in (Forbidden.status, NotFound.status) else "invalid" if status == 400 else "refused"
    return Settled(kind, error=error)


def forbidden_batch(records: tuple[Any, ...], reason: str) -> IntakeResult:
    """Every record of a batch whose topic is no principal: forbidden, nothing posted."""
    return IntakeResult(
        [RecordOutcome(i, _usage_id(r), "forbidden", "forbidden", reason) for i, r in enumerate(records)]
    )


def _usage_id(record: Any) -> str | None:
    usage_id = record.get("usage_id") if isinstance(record, dict) else None
    return usage_id if isinstance(usage_id, str) else None


# Messages sent back --------------------------------------------------------------------


def single_result(message: Message, envelope: Envelope, settled: Settled) -> tuple[bytes, dict[str, str]]:
    body = {
        "source_topic": message.topic,
        "message_id": message.message_id,
        "action": envelope.action,
        "idempotency_key": envelope.key,
        "correlation_id": envelope.correlation_id,
        "status": settled.status,
        "transaction": settled.transaction,
        "error": None if settled.error is None else _clipped(settled.error),
    }
    return _encoded(body), _result_attributes(message, envelope, settled.status)


def batch_result(message: Message, envelope: Envelope, intake: IntakeResult) -> tuple[bytes, dict[str, str]]:
    """The batch's result, under MAX_RESULT_BYTES: each error clipped; if that is still
    too big, what is cut, in order, is every error's details, then its message, then
    the outcomes themselves (the counts stay); `truncated` names the last cut."""
    body = {
        "source_topic": message.topic,
        "message_id": message.message_id,
        "action": BATCH_ACTION,
        "batch_id": envelope.key,
        "correlation_id": envelope.correlation_id,
        "counts": intake.counts(),
        "db_calls": intake.db_calls,
    }
    outcomes = [_clipped(outcome.as_dict()) for outcome in intake.outcomes]
    for cut in (None, "details", "message"):
        if cut is not None:
            outcomes = [_without(outcome, cut) for outcome in outcomes]
        encoded = _encoded({**body, "truncated": cut, "outcomes": outcomes})
        if len(encoded) <= MAX_RESULT_BYTES:
            return encoded, _result_attributes(message, envelope, "batch")
    return _encoded({**body, "truncated": "outcomes", "outcomes": []}), _result_attributes(message, envelope, "batch")


def _clipped(value: Any, depth: int = 0) -> Any:
    """An outcome or error with every text cut to MAX_TEXT and every list (of problems)
    to MAX_PROBLEMS; `more_details` counts the problems cut."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if depth > 4:  # deeper than any error the ledger makes: its gist
        return str(value)[:MAX_TEXT]
    if isinstance(value, list | tuple):
        return [_clipped(v, depth + 1) for v in value[:MAX_PROBLEMS]]
    if not isinstance(value, dict):
        return value
    clipped = {str(k)[:MAX_TEXT]: _clipped(v, depth + 1) for k, v in value.items()}
    details = value.get("details")
    if isinstance(details, list) and len(details) > MAX_PROBLEMS:
        clipped["more_details"] = len(details) - MAX_PROBLEMS
    return clipped


def _without(outcome: dict[str, Any], field: str) -> dict[str, Any]:
    error = outcome.get("error")
    if not isinstance(error, dict):
        return outcome
    return {**outcome, "error": {k: v for k, v in error.items() if k != field and k != "more_details"}}


def _result_attributes(message: Message, envelope: Envelope, status: str) -> dict[str, str]:
    """What a publisher's subscription can filter on (attributes.source_topic = ...)
    and match by (key: the idempotency key or the batch id)."""
    attributes = {"source_topic": message.topic, "action": envelope.action, "key": envelope.key, "status": status}
    if envelope.correlation_id is not None:
        attributes["correlation_id"] = envelope.correlation_id
    return attributes


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True, default=str).encode()


def dead_letter(message: Message, reason: str) -> tuple[bytes, dict[str, str]]:
    """The message as it came, with why and where from, for the operator's command."""
    attributes = {**original_attributes(message.attributes), DEAD_LETTER_REASON: reason[:1000]}
    return message.data, {**attributes, DEAD_LETTER_SOURCE_TOPIC: message.topic}


def original_attributes(attributes: dict[str, str]) -> dict[str, str]:
    """A message's attributes without what dead-lettering adds (ours and Pub/Sub's)."""
    return {name: value for name, value in attributes.items() if not reserved(name)}


def failure_id(data: bytes, attributes: dict[str, str]) -> str:
    """The id under which a message's transient failures are recorded: the same for every
    delivery of it, for a copy Pub/Sub dead-lettered, and for a replay."""
    digest = hashlib.sha256(data)
    for name, value in sorted(original_attributes(attributes).items()):
        digest.update(b"\x00" + name.encode() + b"\x00" + value.encode())
    return digest.hexdigest()
