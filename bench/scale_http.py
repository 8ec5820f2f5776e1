"""The HTTP mix on one database of `python -m bench.scale` (the fresh ledger or the grown
one): a second set of the functions, served against that database, and the mix of
bench/mixed.py sent to them.

The stack's own functions serve its `ledger` database; a function serves the database
its LEDGER_DB_NAME names (common/config.py). So the functions the mix uses (topup,
usage, transfer, void) and wallets are started here the way bench/cold_start.py starts
them (functions-framework, each in its own session, on a free port), with the stack's
environment and their own logins, and with two changes: LEDGER_DB_NAME, and their ledger
events published to a topic of their own with no subscriber (on the dev stack the
events topic is pushed to the automation function, which would act on another
database's wallets). The benchmark's caller is registered in that database.

The mix runs on `wallets` IDR customers of the database (the grown ledger's include its
heaviest), each topped up once first, twice over:
  - closed loop, `clients` clients for `seconds` after `warmup`: the throughput;
  - open loop at `rate` requests/s (bench/arrivals.py), latency from each request's
    intended send time (HDR histogram): p50, p95, p99 at that fixed arrival rate.
Any error or timeout fails the run. Then a wallet read through the wallets function must
answer what the database holds for one of those wallets: the functions served it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pg8000.native
import requests
import urllib3

from bench import arrivals, grow, http_client, mixed, runner
from bench.cold_start import spawn
from bench.setup import BenchData, register_caller
from emulators.stack import Stack, http_responds, kill_group, wait_for

SERVED = ("topup", "usage", "transfer", "void", "wallets")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _topic(stack: Stack, topic: str) -> None:
    """A Pub/Sub topic on the stack's emulator, with no subscription: what is published to
    it is dropped, as a topic without subscribers drops it in Google Cloud."""
    response = requests.put(stack.pubsub_url(f"topics/{topic}"), timeout=10)
    if response.status_code not in (200, 409):
        response.raise_for_status()


@contextmanager
def functions_on(stack: Stack, name: str) -> Iterator[dict[str, str]]:
    """Each of SERVED, serving database `name`, until the block ends: function -> URL."""
    topic = f"{stack.settings().events_topic}-bench-scale"
    _topic(stack, topic)
    started: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for function in SERVED:
            port = _free_port()
            env = {
                **os.environ,
                **stack.function_env(function),
                "LEDGER_DB_NAME": name,
                "LEDGER_EVENTS_TOPIC": topic,
            }
            started[function] = (spawn(function, env, port), f"http://127.0.0.1:{port}")
        for function, (process, url) in started.items():
            wait_for(lambda p=process, u=url: p.poll() is not None or http_responds(u), f"function {function}", 60)
            if process.poll() is not None:
                raise RuntimeError(f"function {function} (database {name}) exited with {process.returncode}")
        yield {function: url for function, (_, url) in started.items()}
    finally:
        for process, _ in started.values():  # all told at once: each takes a moment to end
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in started.values():
            kill_group(process.pid)


def fund(stack: Stack, name: str, count: int) -> list[int]:
    """The first `count` IDR customers (every fifth is USD: bench/grow.py), each topped up
    through ledger.commit_posting() so the mix's usages and transfers have credit."""
    con = pg8000.native.Connection(**grow.database_dsn(stack, name))
    try:
        first, customers = con.run("SELECT first_customer, customers FROM public.grown_ledger")[0]
        wallets = [first + i for i in range(min(customers, count * 5 // 4 + 1)) if i % 5 != 4][:count]
        funding = con.run(
            "SELECT id FROM ledger.wallets WHERE kind = 'system' AND asset_code = 'IDR' AND system_role = 'funding'"
        )[0][0]
        con.run(
            "SELECT ledger.commit_posting(:k || w, 'bench', 'topup', 'IDR', 1000000, w, NULL,"
            " ARRAY[CAST(:f AS bigint), w], ARRAY[-1000000, 1000000]::bigint[], p_external_ref => :k || w)"
            " FROM unnest(CAST(:ws AS bigint[])) AS w",
            k=f"scale-http-{uuid.uuid4().hex[:8]}-",
            f=funding,
            ws=wallets,
        )
        return wallets
    finally:
        con.close()


def _send(acts: list[Callable[[], str]], worker: int) -> str:
    """One mixed request from `worker`'s client, its outcome as bench/arrivals.py counts it."""
    try:
        outcome = acts[worker]()
    except urllib3.exceptions.TimeoutError:
        return arrivals.TIMEOUT
    return outcome if outcome in arrivals.ANSWERED else outcome.split(" on ", 1)[0]


def _warm(urls: dict[str, str], wallets: list[int]) -> None:
    """One request of each kind, in turn: each function's first request loads its
    libraries and clients (seconds on a busy machine), which no run should count."""
    caller = http_client.AUTHORIZATION
    sent = {
        "topup": {"wallet_id": wallets[0], "asset": "IDR", "amount": 10, "external_ref": f"warm-{uuid.uuid4()}"},
        "transfer": {"from_wallet_id": wallets[0], "to_wallet_id": wallets[-1], "asset": "IDR", "amount": 1},
        "usage": {"wallet_id": wallets[0], "asset": "IDR", "amount": 1, "usage_id": f"warm-{uuid.uuid4()}"},
    }  # the usage last: the void reverses it
    sent["usage"]["product"] = "warm"

    def answered(action: str, answer: requests.Response) -> requests.Response:
        if answer.status_code >= 300:
            raise RuntimeError(f"warming {action}: HTTP {answer.status_code} {answer.text[:300]}")
        return answer

    for action, body in sent.items():
        key = {"Idempotency-Key": f"warm-{uuid.uuid4()}", **caller}
        answer = answered(action, requests.post(urls[action], json=body, headers=key, timeout=60))
    void = {"transaction_id": answer.json()["transaction"]["id"], "reason": "warm"}
    key = {"Idempotency-Key": f"warm-{uuid.uuid4()}", **caller}
    answered("void", requests.post(urls["void"], json=void, headers=key, timeout=60))
    answered("wallets", requests.get(f"{urls['wallets']}/wallets/{wallets[0]}", headers=caller, timeout=60))


def _served_this_database(stack: Stack, name: str, wallets_url: str, wallet: int) -> None:
    con = pg8000.native.Connection(**grow.database_dsn(stack, name))
    try:
        owner, balance = con.run("SELECT owner_id, balance FROM ledger.wallets WHERE id = :w", w=wallet)[0]
    finally:
        con.close()
    answer = requests.get(f"{wallets_url}/wallets/{wallet}", headers=http_client.AUTHORIZATION, timeout=30)
    read = answer.json().get("wallet", {}) if answer.status_code == 200 else {}
    if (read.get("owner_id"), read.get("balance")) != (owner, balance):
        raise RuntimeError(f"{name}: wallet {wallet} is {owner} with {balance}; the function answered {answer.text}")


def mix(
    stack: Stack, name: str, wallets: int, clients: int, rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """Closed-loop throughput and open-loop latency of the mix on database `name`."""
    register_caller(stack, grow.database_dsn(stack, name))
    data = BenchData(wallets=fund(stack, name, wallets), hot_wallet=0)
    with functions_on(stack, name) as urls:
        _warm(urls, data.wallets)
        make = mixed.worker(stack, data, [], timeout_s=10.0, asset="IDR", url=urls.__getitem__)
        closed = runner.run("mix", clients, seconds, make, warmup_s=warmup)
        if closed.outcomes[runner.ERROR]:
            raise RuntimeError(f"{name}: the closed-loop mix failed: {closed.error_samples}")
        workers = max(4, clients)
        acts = [make(w) for w in range(workers)]
        step = arrivals.run_step(
            rate,
            arrivals.uniform(rate, warmup + seconds),
            warmup,
            partial(_send, acts),
            workers,
            time.monotonic,
            time.sleep,
            10.0,
        )
        if step.errors or step.counted != step.scheduled:
            raise RuntimeError(f"{name}: the open-loop mix at {rate:g}/s failed: {step.errors}")
        _served_this_database(stack, name, urls["wallets"], data.wallets[0])
    return {
        "throughput": closed.throughput,
        "rate": rate,
        "achieved": step.achieved,
        "ms": {p: step.ms(p) for p in (50.0, 95.0, 99.0)},
    }
