"""Cold start: time from process start to the first successful response, for every
function beside its own yardstick (bench/yardsticks.py), started the same way.

`python -m bench.cold_start --function topup --repeats 9` measures one function (or
all) against its yardstick on the dev stack and prints the table `make bench` prints.
The function and its yardstick take turns, so a burst of noise on this shared machine
falls on both.
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import requests

from bench import http_client
from bench.yardsticks import NEEDS, first_calls
from emulators.stack import REPO, kill_group

EMPTY = Path(__file__).resolve().parent / "empty_function" / "main.py"
YARDSTICKS = ("empty", "yardstick", "yardstick_event")
SCHEDULED = ("erp_export", "outbox_sweeper", "erp_reconcile", "lot_expiry")  # started by a Pub/Sub push
FUNCTIONS = tuple(NEEDS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_request(name: str, wallet: int, asset: str, member: int) -> tuple[str, str, dict | None, dict[str, str]]:
    """(method, path, JSON body, headers) of a request that succeeds on a healthy stack.
    `member`: a wallet with a parent, for allocate and reclaim."""
    caller = dict(http_client.AUTHORIZATION)  # set by setup.register_caller()
    reference = f"cold-{uuid.uuid4()}"  # as key and business id: a payment's reference, a usage, posts once
    key = {"Idempotency-Key": reference, **caller}
    money = {"wallet_id": wallet, "asset": asset, "amount": 1}
    return {
        "empty": ("GET", "/", None, {}),
        "topup": ("POST", "/", {**money, "external_ref": reference}, key),
        "addon": ("POST", "/", {**money, "external_ref": reference, "plan": "cold"}, key),
        "allocate": ("POST", "/", {**money, "wallet_id": member}, key),
        "reclaim": ("POST", "/", {**money, "wallet_id": member}, key),
        "bonus": ("POST", "/", money, key),
        "usage": ("POST", "/", {**money, "usage_id": reference, "product": "cold"}, key),
        "transfer": (
            "POST",
            "/",
            {"from_wallet_id": wallet, "to_wallet_id": wallet + 1, "asset": asset, "amount": 1},
            key,
        ),
        "void": ("POST", "/", {"transaction_id": 0}, key),  # replaced by the caller with a real id
        "wallets": ("GET", f"/wallets/{wallet}", None, caller),
        # the scheduled functions get a Cloud Scheduler tick, pushed as Pub/Sub pushes it
        "erp_export": ("POST", "/", _tick(), {}),
        "outbox_sweeper": ("POST", "/", _tick(), {}),
        "erp_reconcile": ("POST", "/", _tick(), {}),
        "lot_expiry": ("POST", "/", _tick(), {}),
    }[name]


def _tick() -> dict:
    return {
        "message": {"data": base64.b64encode(b"tick").decode(), "messageId": str(uuid.uuid4())},
        "subscription": "projects/p/subscriptions/s",
    }


def spawn(name: str, env: dict[str, str], port: int) -> subprocess.Popen:
    """Start function `name` (or a yardstick: "empty", "yardstick", "yardstick_event") the way `make dev`
    does: the functions-framework command, in a session of its own so it can be killed
    whole."""
    source = EMPTY if name in YARDSTICKS else REPO / "functions" / name / "main.py"
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "functions-framework"),
            "--target",
            name,
            "--source",
            str(source),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**{k: v for k, v in env.items() if k != "FUNCTION_TARGET"}, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@contextmanager
def serving(name: str, env: dict[str, str]) -> Iterator[str]:
    """The base URL of function `name`, served until the block ends."""
    port = _free_port()
    process = spawn(name, env, port)
    try:
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=30)
                break
            except requests.ConnectionError:
                time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/"
    finally:
        kill_group(process.pid)


def from_start(name: str, env: dict[str, str], request: tuple[str, str, dict | None, dict[str, str]]) -> float:
    """Milliseconds from spawning the server to its first 2xx answer."""
    port = _free_port()
    method, path, body, headers = request
    began = time.perf_counter()
    process = spawn(name, env, port)
    try:
        deadline = began + 60
        while time.perf_counter() < deadline:
            try:
                response = requests.request(
                    method, f"http://127.0.0.1:{port}{path}", json=body, headers=headers, timeout=30
                )
                if response.status_code < 300:
                    return (time.perf_counter() - began) * 1000
                raise SystemExit(f"{name}: first request answered {response.status_code}: {response.text[:300]}")
            except requests.ConnectionError:
                time.sleep(0.005)
            except requests.Timeout as error:
                raise SystemExit(f"{name}: the first request got no answer within 30 s: {error}") from error
        raise SystemExit(f"{name}: no successful response within 60 s")
    finally:
        kill_group(process.pid)


YARDSTICK_TOPIC = "cold-start-yardstick"  # no subscription: the yardsticks' messages reach nobody


def yardstick_settings(stack: Any) -> dict[str, str]:
    """What every yardstick needs of `stack`: the token issuer's certs, and a topic of
    its own to publish to, created here."""
    stack._pubsub_put(f"topics/{YARDSTICK_TOPIC}", {})
    return {"LEDGER_YARDSTICK_CERTS_URL": f"{stack.issuer}/certs", "LEDGER_YARDSTICK_TOPIC": YARDSTICK_TOPIC}


def yardstick_env(name: str, stack_env: dict[str, str], settings: dict[str, str]) -> dict[str, str]:
    """What the yardstick of function `name` runs with: its packages, the logins of the
    function itself, `settings` (yardstick_settings())."""
    return {**stack_env, **settings, "LEDGER_YARDSTICK": ",".join(first_calls(name))}


def yardstick_request(name: str, request: tuple[str, str, dict | None, dict[str, str]]):
    """The yardstick's first request: the function's own (a tick for a pushed function,
    the same bearer token for an HTTP one), to the path the yardstick serves."""
    method, _path, body, headers = request
    if name in SCHEDULED:
        return method, "/", body, headers
    return "GET", "/", None, {"Authorization": headers["Authorization"]}


def measure_idle(
    name: str, env: dict[str, str], request: tuple[str, str, dict | None, dict[str, str]], idle_s: float
) -> float:
    """Milliseconds of the first request alone, sent `idle_s` seconds after the instance
    started listening (a minimum instance that waited for traffic)."""
    from emulators.stack import port_open

    port = _free_port()
    process = spawn(name, env, port)
    try:
        deadline = time.perf_counter() + 60
        while not port_open(port):
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name}: not listening within 60 s")
            time.sleep(0.005)
        time.sleep(idle_s)
        method, path, body, headers = request
        began = time.perf_counter()
        response = requests.request(method, f"http://127.0.0.1:{port}{path}", json=body, headers=headers, timeout=30)
        if response.status_code >= 300:
            raise SystemExit(f"{name}: first request answered {response.status_code}: {response.text[:300]}")
        return (time.perf_counter() - began) * 1000
    finally:
        kill_group(process.pid)


def run(
    function_env: Callable[[str], dict[str, str]],
    wallet: int,
    asset: str,
    void_ids: list[int],
    repeats: int,
    erp_stream: str,
    member: int,
    settings: dict[str, str],
    names: tuple[str, ...] = FUNCTIONS,
    extra_env: dict[str, str] | None = None,
    pending_event: Callable[[], object] = lambda: None,
    idle_s: float | None = None,
) -> list[tuple[str, float, float]]:
    """(name, function's median ms, its yardstick's median ms) for each of `names`, after
    the empty function's row (its "yardstick" figure is itself).

    `function_env(name)`: each function's environment, as the stack starts it.
    `erp_stream`: an export stream with nothing to export, with ERP books of its own, so
    the ERP functions' first answer measures their start, not a pass over the ledger's
    backlog nor a difference with the stack's own books; likewise the
    sweeper's tick links one batch of the hash chain, not the bench ledger's whole
    backlog (up to its 40 s budget). `pending_event()` leaves one event to publish
    before each of the sweeper's ticks, so its first request publishes, as its yardstick
    does. `extra_env`: for the functions only (a means switched on or off), never for
    the yardsticks. `idle_s`: time each first request alone, on an instance that has
    listened for that long (measure_idle)."""

    def measure(name: str, env: dict[str, str], request: tuple[str, str, dict | None, dict[str, str]]) -> float:
        if idle_s is None:
            return from_start(name, env, request)
        return measure_idle(name, env, request, idle_s)

    empty = statistics.median(
        measure("empty", {**os.environ, **function_env("topup")}, first_request("empty", wallet, asset, member))
        for _ in range(repeats)
    )
    rows = [("empty", empty, empty)]
    for name in names:
        own, yard = [], []
        for _ in range(repeats):
            request = first_request(name, wallet, asset, member)
            if name == "void":
                request = (*request[:2], {"transaction_id": void_ids.pop()}, request[3])
            env = {
                **os.environ,
                **function_env(name),
                "LEDGER_ERP_STREAM": erp_stream,
                # ERP books of the stream's own, empty as the stream: the reconciliation's
                # first tick finds them equal (a difference is read twice, a pause apart)
                "LEDGER_ERP_URL": f"{function_env(name)['LEDGER_ERP_URL'].rstrip('/')}/books/{erp_stream}",
                "LEDGER_CHAIN_EXTEND_BUDGET_S": "0",
                "LEDGER_OUTBOX_SWEEP_MIN_AGE_S": "0",
            }
            if name == "outbox_sweeper":
                pending_event()
            target = "yardstick_event" if name in SCHEDULED else "yardstick"
            yard.append(measure(target, yardstick_env(name, env, settings), yardstick_request(name, request)))
            own.append(measure(name, {**env, **(extra_env or {})}, request))
        rows.append((name, statistics.median(own), statistics.median(yard)))
    return rows


def catch_up_ticks(stack: Any) -> None:
    """Link the hash chain and advance the system accounts' balance checkpoints to the
    horizon, as the sweeper's minute tick keeps them. With the scheduler stopped for the
    benches, whatever they posted waits for it (after bench.erp_reconcile's seed, a
    million transactions): caught up here, the sweeper's first tick measures a start,
    not a backlog."""
    for command in (("common.chain", "extend"), ("common.ops", "checkpoints")):
        done = subprocess.run(
            [sys.executable, "-m", *command],
            env={**os.environ, **stack.operator_env(), "PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode:
            raise SystemExit(f"python -m {' '.join(command)} failed: {done.stderr[-2000:]}")


def prepare(stack: Any) -> dict[str, Any]:
    """What the first requests need on `stack`: the bench's caller, a funded wallet (and
    the next, for a transfer), a tree member, an empty ERP stream; the seed's events
    marked published, so the sweeper's first tick does not publish them all."""
    from bench import events, setup

    before = events.high_water(stack)
    data = setup.prepare(stack, 10)
    setup.mark_events_published(stack, before)
    catch_up_ticks(stack)
    return {
        "wallet": data.wallets[0],
        "asset": setup.ASSET,
        "erp_stream": setup.empty_erp_stream(stack),
        "member": setup.tree_member(stack, funds=1_000),
        "settings": yardstick_settings(stack),
    }


@click.command()
@click.option("--function", "names", multiple=True, type=click.Choice(FUNCTIONS), help="Repeatable; all if none.")
@click.option("--repeats", default=5, show_default=True, help="Cold starts of each, the median counts.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack (the tests use test).")
@click.option(
    "--env",
    "extra",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set for the functions, never their yardsticks: a means switched on or off.",
)
@click.option(
    "--idle",
    type=float,
    default=None,
    help="Time the first request alone, sent this many seconds after the instance listens (a minimum instance).",
)
def main(names: tuple[str, ...], repeats: int, profile: str, extra: tuple[str, ...], idle: float | None) -> None:
    from bench import report, setup
    from emulators.stack import Stack

    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    names = names or FUNCTIONS
    given = prepare(stack)
    voids = setup.voidable_transactions(stack, given["wallet"], repeats) if "void" in names else []
    rows = run(
        stack.function_env,
        given["wallet"],
        given["asset"],
        voids,
        repeats,
        given["erp_stream"],
        given["member"],
        given["settings"],
        names,
        dict(item.split("=", 1) for item in extra),
        lambda: setup.voidable_transactions(stack, given["wallet"], 1),
        idle,
    )
    switched = f" with {', '.join(extra)}" if extra else ""
    if idle is None:
        click.echo(f"Cold starts (median of {repeats}){switched}\n")
        click.echo(report.cold_table(rows))
    else:
        click.echo(f"First request on an instance idle {idle:g} s after it listened (median of {repeats}){switched}\n")
        click.echo(report.cold_table(rows, "first request alone, ms"))


if __name__ == "__main__":
    main()
