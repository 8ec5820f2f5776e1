"""Money requests as plain values, for the model-checked tests: sent to the real service
in-process (`send`), or run on the in-memory model (`on_model`, tests/ledger_model.py).

`now()` is the clock both judge a step at.

A request names wallets by the model's names; `ids` maps them to the database's. Its
fields are its body: the same request under a key is a replay, another one (a new
`note`, which becomes the description or a void's reason) reuses the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.errors import LedgerError
from common.ledger import commands
from tests.ledger_model import OK, Ledger, Posting
from tests.support import CALLER

ASSET = "TST"


@dataclass(frozen=True)
class Request:
    action: str  # topup, bonus, usage, transfer, allocate, reclaim, void
    wallet: str = ""  # the wallet acting: a transfer's source, an allocation's or reclaim's member
    other: str = ""  # a transfer's target
    amount: int = 0
    expires_at: datetime | None = None  # a top-up's or bonus's lot
    transaction_id: int | None = None  # a void's original
    ref: str = ""  # a top-up's payment reference, a usage's id: one per request
    note: str = ""


@dataclass(frozen=True)
class Answer:
    code: str  # OK or the error's code
    transaction_id: int | None = None
    replayed: bool = False


def send(service: Any, ids: dict[str, int], request: Request, key: str) -> Answer:
    """The request through the service; a refusal, raised or replayed, as its code."""
    try:
        outcome = _call(service, ids, request, key)
    except LedgerError as error:
        return Answer(error.code)
    if outcome.status >= 400:  # a refusal kept with its key, replayed
        return Answer(outcome.body["error"]["code"], replayed=outcome.replayed)
    return Answer(OK, outcome.body["transaction"]["id"], outcome.replayed)


def _call(service: Any, ids: dict[str, int], r: Request, key: str) -> Any:
    note = r.note or None
    if r.action == "topup":
        cmd: Any = commands.TopUp(
            wallet_id=ids[r.wallet],
            asset=ASSET,
            amount=r.amount,
            external_ref=r.ref,
            expires_at=r.expires_at,
            description=note,
        )
        return service.top_up(CALLER, cmd, key)
    if r.action == "bonus":
        cmd = commands.Bonus(
            wallet_id=ids[r.wallet], asset=ASSET, amount=r.amount, expires_at=r.expires_at, description=note
        )
        return service.bonus(CALLER, cmd, key)
    if r.action == "usage":
        cmd = commands.Usage(
            wallet_id=ids[r.wallet], asset=ASSET, amount=r.amount, usage_id=r.ref, product="model", description=note
        )
        return service.usage(CALLER, cmd, key)
    if r.action == "transfer":
        cmd = commands.Transfer(
            from_wallet_id=ids[r.wallet], to_wallet_id=ids[r.other], asset=ASSET, amount=r.amount, description=note
        )
        return service.transfer(CALLER, cmd, key)
    if r.action in ("allocate", "reclaim"):
        edge = commands.Allocate if r.action == "allocate" else commands.Reclaim
        cmd = edge(wallet_id=ids[r.wallet], asset=ASSET, amount=r.amount, description=note)
        return getattr(service, r.action)(CALLER, cmd, key)
    if r.action == "void":
        return service.void(CALLER, commands.Void(transaction_id=r.transaction_id, reason=note), key)
    raise ValueError(f"unknown action {r.action}")


def on_model(model: Ledger, r: Request, at: datetime) -> Callable[[], Posting]:
    """The model's action for the request, judged at `at`."""
    actions: dict[str, Callable[[], Posting]] = {
        "topup": lambda: model.credit(r.wallet, r.amount, at, r.expires_at, "topup"),
        "bonus": lambda: model.credit(r.wallet, r.amount, at, r.expires_at, "bonus"),
        "usage": lambda: model.usage(r.wallet, r.amount, at),
        "transfer": lambda: model.transfer(r.wallet, r.other, r.amount, at),
        "allocate": lambda: model.allocate(r.wallet, r.amount, at),
        "reclaim": lambda: model.reclaim(r.wallet, r.amount, at),
        "void": lambda: model.void(r.transaction_id or 0, at),
    }
    return actions[r.action]


def now() -> datetime:
    """The clock a step is judged at, kept off a UTC midnight: the spend periods (day,
    week, month) start there, and the model's and the database's clocks differ by the
    step's duration."""
    moment = datetime.now(UTC)
    to_midnight = (moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)) - moment
    if to_midnight < timedelta(seconds=3):
        time.sleep(to_midnight.total_seconds() + 1)
        moment = datetime.now(UTC)
    return moment
