"""Cold start: time from process start to the first successful response, for every
function and for an empty functions-framework function started the same way."""

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

import requests

from bench import http_client
from emulators.stack import REPO, kill_group

EMPTY = Path(__file__).resolve().parent / "empty_function" / "main.py"
YARDSTICKS = ("empty", "libraries")


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
        "libraries": ("GET", "/", None, {}),
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
    """Start function `name` (or a yardstick, "empty" or "libraries") the way `make dev`
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


def measure(name: str, env: dict[str, str], request: tuple[str, str, dict | None, dict[str, str]]) -> float:
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


def run(
    function_env: Callable[[str], dict[str, str]],
    wallet: int,
    asset: str,
    void_ids: list[int],
    repeats: int,
    erp_stream: str,
    member: int,
) -> list[tuple[str, float]]:
    """`function_env(name)`: each function's environment, as the stack starts it.
    `erp_stream`: an export stream with nothing to export, so the ERP functions' first
    answer measures their start, not a pass over the ledger's backlog; likewise the
    sweeper's tick links one batch of the hash chain, not the bench ledger's whole
    backlog (up to its 40 s budget)."""
    names = [
        *YARDSTICKS,
        "topup",
        "bonus",
        "usage",
        "transfer",
        "void",
        "wallets",
        "erp_export",
        "outbox_sweeper",
        "erp_reconcile",
        "addon",
        "allocate",
        "reclaim",
        "lot_expiry",
    ]
    medians = []
    for name in names:
        samples = []
        for _ in range(repeats):
            request = first_request(name, wallet, asset, member)
            if name == "void":
                request = (*request[:2], {"transaction_id": void_ids.pop()}, request[3])
            env = {
                **os.environ,
                **function_env("topup" if name in YARDSTICKS else name),
                "LEDGER_ERP_STREAM": erp_stream,
                "LEDGER_CHAIN_EXTEND_BUDGET_S": "0",
            }
            samples.append(measure(name, env, request))
        medians.append((name, statistics.median(samples)))
    return medians
