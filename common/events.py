"""Ledger events as Pub/Sub messages (pure: no client here).

An event is the outbox row Postgres wrote with its transaction (db/schema/80_outbox.sql).
Its message carries the event id as an attribute, so consumers dedupe on it (Pub/Sub
redelivers, and a re-published event gets a new message id), and the wallet the action
is about as its ordering key, so one wallet's events arrive in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


def message(event: dict[str, Any]) -> Message:
    return Message(
        data=json.dumps(event, sort_keys=True, separators=(",", ":")).encode(),
        attributes={
            "event_id": str(event["event_id"]),
            "action": event["action"],
            "asset": event["asset"],
        },
        ordering_key=f"wallet-{event['wallet_id']}",
    )
