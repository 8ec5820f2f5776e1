"""How `make faults` kills, freezes and brings back each component of the local stack.

Every spawned service (Redis, the emulators, the ERP receiver, each function) is its own
process group (emulators/stack.py); Postgres is its postmaster and backends.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import processes
from emulators.stack import Stack, StackError, group_alive, port_open, wait_for


def signal_postgres(stack: Stack, sig: signal.Signals) -> float:
    """`sig` to the postmaster and every backend; returns when (monotonic) it was sent.
    The postmaster is stopped first, so it forks no backend while the rest are signalled."""
    pids = processes.stack_processes(stack).get("postgres", [])
    if not pids:
        raise StackError("Postgres is not running")
    postmaster = pids[0]
    os.kill(postmaster, signal.SIGSTOP)
    children = sorted(set(pids[1:]) | set(processes.stack_processes(stack).get("postgres", [])[1:]))
    sent = time.monotonic()
    for pid in [*children, postmaster]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if sig == signal.SIGKILL:
        wait_for(lambda: not port_open(stack.ports["postgres"]), "postgres to die", 20)
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in [*children, postmaster]), "backends", 20)
    elif sig == signal.SIGCONT:
        os.kill(postmaster, signal.SIGCONT)
    return sent


def stop_postgres(stack: Stack) -> float:
    """A fast shutdown: every session ended, what it had in flight rolled back, as when
    Cloud SQL fails over. Returns when it began."""
    began = time.monotonic()
    stack.stop_postgres()
    return began


def signal_group(stack: Stack, name: str, sig: signal.Signals) -> float:
    """`sig` to a spawned service's process group; returns when (monotonic) it was sent."""
    pgid = stack.pgid(name)
    if not group_alive(pgid):
        raise StackError(f"{name} is not running")
    sent = time.monotonic()
    os.killpg(pgid, sig)
    if sig == signal.SIGKILL:
        wait_for(lambda: _reaped(pgid), f"{name} to die", 20)
        port = stack.ports.get(name)
        if port is not None:
            wait_for(lambda: not port_open(port), f"{name}'s port to close", 20)
    return sent


def _reaped(pgid: int) -> bool:
    """Whether the group is gone; reaps its leader if this process started it (the test
    suite's stack), as a killed child stays a zombie, still in its group, until then."""
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not group_alive(pgid)


NOTHING_PENDING = 3  # run_crashing_relay's exit status when it found nothing to publish


def run_crashing_relay(profile: str) -> None:
    """A relay instance that dies between publishing events and marking them published:
    the sweeper's own Relay, its outbox's mark_published replaced by a SIGKILL of this
    process (`python -m bench.faults --crash-relay`, a process of its own)."""
    stack = Stack(profile)
    os.environ.update({**stack.env(), **stack.function_env("outbox_sweeper")})
    from common import bootstrap

    relay = bootstrap.relay()
    outbox = relay._outbox

    class DiesBeforeMarking:
        def __getattr__(self, name: str) -> Any:
            return getattr(outbox, name)

        def mark_published(self, transaction_ids: list[int]) -> None:
            if transaction_ids:
                print(f"published {len(transaction_ids)} events; dying before marking them", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    relay._outbox = DiesBeforeMarking()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        relay.sweep(limit=50)
        time.sleep(0.005)
    print("nothing was pending to publish in 30 s", flush=True)
    sys.exit(NOTHING_PENDING)
