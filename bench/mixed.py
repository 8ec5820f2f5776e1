"""The end-to-end mix over HTTP: top-up 20 %, usage 60 %, transfer 15 %, void 5 %,
with idempotency and locks on, and each response's Server-Timing spans collected so the
table shows where a request's time goes."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict, deque
from collections.abc import Callable

import urllib3

from bench.arrivals import TIMEOUT, Sent
from bench.http_client import Client
from bench.runner import OK, REFUSED
from bench.setup import ASSET, BenchData
from emulators.stack import Stack

MIX = [("topup", 20), ("usage", 60), ("transfer", 15), ("void", 5)]


class SpanTotals:
    """Server-Timing spans and client-observed time, summed over successful requests."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.requests = 0

    def add(self, header: str, client_ms: float) -> None:
        self.requests += 1
        self.ms["client (end to end)"] += client_ms
        for part in header.split(", "):
            name, _, duration = part.partition(";dur=")
            if duration:
                self.ms[name] += float(duration)

    def merge(self, other: SpanTotals) -> None:
        self.requests += other.requests
        for name, ms in other.ms.items():
            self.ms[name] += ms


def worker(
    stack: Stack,
    data: BenchData,
    totals: list[SpanTotals],
    timeout_s: float = 30.0,
    asset: str = ASSET,
    url: Callable[[str], str] | None = None,
) -> Callable[[int], Callable[[], str]]:
    """For the closed-loop runner: worker i's action on `data`'s wallets in `asset`, sent
    to `url(action)` (default: the stack's function of that action), returning its outcome."""
    make = labelled_worker(stack, data, totals, timeout_s, asset, url)

    def outcome_only(index: int) -> Callable[[], str]:
        act = make(index)
        return lambda: act()[0]

    return outcome_only


def open_loop_sender(stack: Stack, data: BenchData, workers: int, timeout_s: float) -> Callable[[int], Sent]:
    """For bench/arrivals.py: `send(worker)` sends one mixed request from that worker's
    own client and returns (outcome as arrivals counts it, the action sent)."""
    make = labelled_worker(stack, data, [], timeout_s)
    acts = [make(w) for w in range(workers)]

    def send(worker: int) -> Sent:
        outcome, action = acts[worker]()
        # "HTTP 503 on usage: ..." counts as "HTTP 503", "ConnectionResetError: ..." by its name
        return outcome.split(" on ", 1)[0].split(": ", 1)[0], action

    return send


def labelled_worker(
    stack: Stack,
    data: BenchData,
    totals: list[SpanTotals],
    timeout_s: float = 30.0,
    asset: str = ASSET,
    url: Callable[[str], str] | None = None,
) -> Callable[[int], Callable[[], tuple[str, str]]]:
    """Worker i's action, returning (its outcome, the action it chose)."""
    import time

    send_to = url or stack.function_url

    def make(index: int) -> Callable[[], tuple[str, str]]:
        session, rng = Client(timeout_s), random.Random(7000 + index)
        mine = SpanTotals()
        totals.append(mine)
        voidable: deque[int] = deque(maxlen=100)
        actions = [name for name, weight in MIX for _ in range(weight)]

        def act() -> tuple[str, str]:
            action = rng.choice(actions)
            if action == "void" and not voidable:
                action = "usage"
            wallet = rng.choice(data.wallets)
            body = {
                "topup": lambda: {
                    "wallet_id": wallet,
                    "asset": asset,
                    "amount": 10,
                    "external_ref": f"m-{uuid.uuid4()}",
                },
                "usage": lambda: {
                    "wallet_id": wallet,
                    "asset": asset,
                    "amount": 1,
                    "usage_id": f"m-{uuid.uuid4()}",
                    "product": "mix",
                },
                "transfer": lambda: {
                    "from_wallet_id": wallet,
                    "to_wallet_id": rng.choice(data.wallets),
                    "asset": asset,
                    "amount": 1,
                },
                "void": lambda: {"transaction_id": voidable.popleft(), "reason": "mix"},
            }[action]()
            began = time.perf_counter()
            try:
                response = session.post(send_to(action), body, headers={"Idempotency-Key": f"mix-{uuid.uuid4()}"})
            except urllib3.exceptions.TimeoutError:
                return TIMEOUT, action
            except Exception as error:  # noqa: BLE001 - a load client counts failures, by action
                return f"{type(error).__name__}: {error}", action
            client_ms = (time.perf_counter() - began) * 1000
            if response.status_code < 300:
                mine.add(response.headers.get("Server-Timing", ""), client_ms)
                if action == "usage":
                    voidable.append(response.json()["transaction"]["id"])
                return OK, action
            if response.status_code in (409, 422):
                return REFUSED, action
            return f"HTTP {response.status_code} on {action}: {response.text[:200]}", action

        return act

    return make


def spans_table(totals: list[SpanTotals]) -> str:
    merged = SpanTotals()
    for part in totals:
        merged.merge(part)
    if not merged.requests:
        return "(no successful requests)"
    client = merged.ms["client (end to end)"]
    rows = ["| where | mean ms per request | share of end to end |", "|---|---:|---:|"]
    server = merged.ms.get("total", 0.0)
    named = {name: ms for name, ms in merged.ms.items() if name not in ("total", "client (end to end)")}
    for name, ms in sorted(named.items(), key=lambda item: -item[1]):
        rows.append(f"| {name} | {ms / merged.requests:.2f} | {ms / client:.0%} |")
    other = server - sum(named.values())
    rows.append(f"| function code, parsing, JSON | {other / merged.requests:.2f} | {other / client:.0%} |")
    transport = client - server
    rows.append(f"| HTTP, server queueing, client | {transport / merged.requests:.2f} | {transport / client:.0%} |")
    rows.append(f"| **end to end** | {client / merged.requests:.2f} | 100% |")
    return "\n".join(rows)
