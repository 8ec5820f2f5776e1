"""The four scenarios, each driven two ways: over HTTP through the running functions,
and straight through common/'s posting path (no HTTP, no Firestore, no Redis)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

from bench.http_client import Client
from bench.runner import OK, REFUSED
from bench.setup import ASSET, BenchData
from emulators.stack import Stack

TOPUP = "top-up, all through one treasury"
HOT_USAGE = "usage on one hot wallet"
Body = Callable[[random.Random], tuple[str, dict[str, Any]]]


def bodies(data: BenchData) -> dict[str, Body]:
    """Scenario name -> a function giving (function, request body) for one action."""

    def topup(rng):
        return "topup", {
            "wallet_id": rng.choice(data.wallets),
            "asset": ASSET,
            "amount": 1,
            "external_ref": f"b-{uuid.uuid4()}",
        }

    def usage_spread(rng):
        return "usage", {
            "wallet_id": rng.choice(data.wallets),
            "asset": ASSET,
            "amount": 1,
            "usage_id": f"b-{uuid.uuid4()}",
            "product": "bench",
        }

    def usage_hot(rng):
        return "usage", {
            "wallet_id": data.hot_wallet,
            "asset": ASSET,
            "amount": 1,
            "usage_id": f"b-{uuid.uuid4()}",
            "product": "bench",
        }

    def transfer(rng):
        source, target = rng.sample(data.wallets, 2)
        return "transfer", {"from_wallet_id": source, "to_wallet_id": target, "asset": ASSET, "amount": 1}

    spread = f"{len(data.wallets):,} wallets"
    return {
        TOPUP: topup,
        f"usage over {spread}": usage_spread,
        HOT_USAGE: usage_hot,
        f"transfer among {spread}": transfer,
    }


def http_worker(stack: Stack, body: Body) -> Callable[[int], Callable[[], str]]:
    def make(index: int) -> Callable[[], str]:
        session, rng = Client(), random.Random(index)

        def act() -> str:
            function, payload = body(rng)
            response = session.post(
                stack.function_url(function),
                payload,
                headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
            )
            if response.status_code < 300:
                return OK
            if response.status_code in (409, 422):
                return REFUSED
            return f"HTTP {response.status_code}: {response.text[:200]}"

        return act

    return make


def empty_worker(url: str) -> Callable[[int], Callable[[], str]]:
    """The mixed workload's request shape against the empty function: HTTP alone."""

    def make(index: int) -> Callable[[], str]:
        session = Client()
        body = {"wallet_id": index, "asset": ASSET, "amount": 1, "usage_id": "empty", "product": "empty"}

        def act() -> str:
            response = session.post(url, body, headers={"Idempotency-Key": f"empty-{uuid.uuid4()}"})
            return OK if response.status_code < 300 else f"HTTP {response.status_code}"

        return act

    return make


def core_worker(body: Body) -> Callable[[int], Callable[[], str]]:
    """The same action as a posting through PostgresLedger.post(), nothing around it."""
    from common import bootstrap
    from common.errors import InProgress, Refused
    from common.ledger import commands, postings

    ledger = bootstrap.ledger()
    accounts = ledger.system_accounts(ASSET)
    build = {
        "topup": lambda p: postings.top_up(commands.TopUp.model_validate(p), accounts),
        "usage": lambda p: postings.usage(commands.Usage.model_validate(p), accounts),
        "transfer": lambda p: postings.transfer(commands.Transfer.model_validate(p)),
    }

    def make(index: int) -> Callable[[], str]:
        rng = random.Random(1000 + index)

        def act() -> str:
            function, payload = body(rng)
            try:
                ledger.post(build[function](payload), f"bench-core-{uuid.uuid4()}", "bench", "bench", None)
            except (Refused, InProgress):
                return REFUSED
            return OK

        return act

    return make
