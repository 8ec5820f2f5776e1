"""`make faults`: kill or freeze each component while traffic flows, then account for
every request, posting, balance, event and ERP booking (docs/fault-injection.md).

The traffic (bench/fault_harness.py, bench/fault_traffic.py) runs at a fixed rate for the
whole run: HTTP top-ups, usages, transfers and voids, usages the ledger must refuse, and
usages published as Pub/Sub messages; every request retried under its own
Idempotency-Key until final. Ticks for the outbox sweeper and the ERP export come every
2 s. The faults (bench/fault_components.py), one at a time, each with traffic before
and after it, are listed in FAULTS. Afterwards, bench/fault_accounting.py; a table per
fault to stdout and, with `--write`, to bench/results/faults.md. Exits 1 if anything was
lost, duplicated, answered wrongly, left unresolved or undelivered, if a fault found
nothing to strike, or if an invariant broke.

    python -m bench.faults [--rate 30] [--faults postgres-kill,function-kill,...] [--write]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import click

from bench import fault_components as components
from bench.fault_accounting import Accounting, Window, account, table
from bench.fault_harness import Harness
from bench.fault_traffic import Request
from bench.http_client import resent
from bench.report import RESULTS, machine
from emulators.stack import REPO, Stack, http_ok

FROZEN_FUNCTION = "usage"
SETTLE_S = 120.0


@dataclass
class Fault:
    name: str
    # strikes, and returns when: the moment itself, when it waited for one
    inject: Callable[[Harness], float | None]
    restore: Callable[[Harness], None]
    hold_s: float  # how long the component stays dead or frozen before it is brought back
    prepare: Callable[[Harness], None] | None = None  # before the fault's window (a second instance)


def catalogue(stack: Stack, hold_s: float, pause_s: float) -> dict[str, Fault]:
    def kill(name: str) -> Fault:
        return Fault(
            f"{name} killed",
            lambda h: components.signal_group(stack, name, signal.SIGKILL),
            lambda h: stack.start_service(name),
            hold_s,
        )

    def crash_postgres_after_an_ack(h: Harness) -> float:
        # right after a posting was acknowledged: what the client holds must survive
        h.acked.clear()
        if not h.acked.wait(timeout=5):
            h.unexercised.append("postgres killed: no acknowledgement to strike right after")
        acknowledged = h.acked_at
        killed = components.signal_postgres(stack, signal.SIGKILL)
        h.notes.append(f"Postgres was killed {(killed - acknowledged) * 1000:.1f} ms after an acknowledgement.")
        return killed

    def kill_function_mid_request(h: Harness) -> float:
        if not h.mid_request(FROZEN_FUNCTION):
            h.unexercised.append(f"{FROZEN_FUNCTION} killed: no request in flight to it")
        return components.signal_group(stack, FROZEN_FUNCTION, signal.SIGKILL)

    def second_instance(h: Harness) -> None:
        h.urls[FROZEN_FUNCTION].append(stack.start_function_instance(FROZEN_FUNCTION, f"{FROZEN_FUNCTION}-second"))

    def freeze_function(h: Harness) -> float:
        """Freeze the function while a usage of its has claimed its key and waits in
        Postgres (on a row lock the run holds on its wallet), then let the posting commit
        under the frozen instance: the key held, the money moved, the answer never sent.
        The second instance must answer the retry with that posting, and never post it
        again. Both steps are checked, or the fault counts as not exercised."""
        with h.holding_wallet() as (wallet, blocked):
            request = h.frozen_request(FROZEN_FUNCTION, wallet)
            if not blocked(10.0) or request.attempts:
                h.unexercised.append(f"{FROZEN_FUNCTION} frozen: its usage never came to wait on the held row")
            frozen = components.signal_group(stack, FROZEN_FUNCTION, signal.SIGSTOP)
        if not h.posted_under(request.key, within_s=5.0):
            h.unexercised.append(f"{FROZEN_FUNCTION} frozen: its usage did not commit while the instance was frozen")
        h.watched = request
        return frozen

    def thaw_function(h: Harness) -> None:
        components.signal_group(stack, FROZEN_FUNCTION, signal.SIGCONT)

    def kill_pubsub(h: Harness) -> float:
        h.pubsub_killed_wall = time.time()
        return components.signal_group(stack, "pubsub", signal.SIGKILL)

    def restart_pubsub(h: Harness) -> None:
        # The emulator forgets topics and subscriptions (Google Cloud's Pub/Sub keeps
        # them), and what it had accepted and not delivered. What it took in its last 2 s
        # and the subscriber never got is queued again first, while no topic exists, so
        # nothing published after the restart is among it; then the subscriber's
        # subscriptions (which make their topics), then the ledger's.
        stack.start_pubsub(topics=False)
        requeued = h.requeue_unseen_events(h.pubsub_killed_wall - 2.0) if h.pubsub_killed_wall else 0
        h.subscribe_all()
        stack.create_topics()
        h.notes.append(
            f"Pub/Sub restart: {requeued} events marked published in the killed emulator's last 2 s and never"
            " delivered were queued again in the outbox (Google Cloud's Pub/Sub keeps what it accepted; in those"
            " 2 s the run cannot tell the emulator's loss from a relay's mark without a publish)."
        )

    def kill_erp(h: Harness) -> float:
        h.erp_killed_wall = time.time()
        return components.signal_group(stack, "erp", signal.SIGKILL)

    def restart_erp(h: Harness) -> None:
        stack.start_service("erp")
        h.erp_restored_wall = time.time()

    def crash_relay(h: Harness) -> float | None:
        done = subprocess.run(
            [sys.executable, "-m", "bench.faults", "--crash-relay", "--profile", stack.profile],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        if done.returncode != -signal.SIGKILL:
            h.unexercised.append(f"relay: did not die between publishing and marking ({done.returncode})")
        h.notes.append(f"Relay instance: {done.stdout.strip()} {done.stderr.strip()[-300:]}".strip())
        return None

    return {
        "postgres-kill": Fault(
            "postgres killed", crash_postgres_after_an_ack, lambda h: stack.start_postgres(), hold_s
        ),
        # a failover as a client sees it: the server ends every session (rolling back what
        # was in flight) and is gone for a while, then answers at the same address
        "postgres-restart": Fault(
            "postgres restarted (failover)",
            lambda h: components.stop_postgres(stack),
            lambda h: stack.start_postgres(),
            hold_s,
        ),
        "redis-kill": kill("redis"),
        "firestore-kill": kill("firestore"),
        "pubsub-kill": Fault("pubsub killed", kill_pubsub, restart_pubsub, hold_s),
        "function-kill": Fault(
            f"{FROZEN_FUNCTION} killed mid-request",
            kill_function_mid_request,
            lambda h: stack.start_service(FROZEN_FUNCTION),
            hold_s,
        ),
        "erp-kill": Fault("erp killed", kill_erp, restart_erp, max(hold_s, 3.0)),  # past an export tick
        "relay-kill": Fault("relay killed between publishing and marking", crash_relay, lambda h: None, 0),
        # longer than the Redis lock TTL (5 s)
        "postgres-pause": Fault(
            "postgres frozen",
            lambda h: components.signal_postgres(stack, signal.SIGSTOP),
            lambda h: components.signal_postgres(stack, signal.SIGCONT),
            pause_s,
        ),
        # longer than the idempotency lease, so the second instance takes the keys over
        "function-pause": Fault(
            f"{FROZEN_FUNCTION} frozen",
            freeze_function,
            thaw_function,
            stack.settings().idempotency_lease_s + 5,
            second_instance,
        ),
    }


FAULTS = (
    "postgres-kill",
    "postgres-restart",
    "redis-kill",
    "firestore-kill",
    "pubsub-kill",
    "function-kill",
    "erp-kill",
    "relay-kill",
    "postgres-pause",
    "function-pause",
)


@dataclass
class Outcome:
    text: str
    clean: bool
    accounting: Accounting
    requests: list[Request]
    windows: list[Window]


def run(
    stack: Stack,
    names: list[str],
    rate: float,
    before_s: float,
    after_s: float,
    hold_s: float,
    pause_s: float,
    workers: int = 256,  # a frozen instance holds one per request sent to it, for timeout_s
    # above the 10 s a copy of a request waits for the key's first holder before it answers
    # 409 (LEDGER_IDEMPOTENCY_WAIT_S), as docs/durability.md asks of clients
    timeout_s: float = 12.0,
    settle_s: float = SETTLE_S,
    echo: Callable[[str], None] = print,
) -> Outcome:
    began = time.monotonic()

    def say(line: str) -> None:
        echo(f"{time.monotonic() - began:6.1f} s {line}")

    os.environ.update(stack.in_process_env())  # the emulators' hosts, for the Pub/Sub clients
    harness = Harness(stack, rate, workers, timeout_s)
    faults = catalogue(stack, hold_s, pause_s)
    harness.phase = faults[names[0]].name
    harness.start_observers()
    harness.traffic.start()
    say("  set up; traffic starts")
    windows: list[Window] = []
    started = time.monotonic()
    try:
        for name in names:
            fault = faults[name]
            opened = time.monotonic()
            harness.phase = fault.name
            if fault.prepare:
                fault.prepare(harness)
            time.sleep(before_s)
            say(f"  {fault.name}: {len(harness.traffic.requests):,} requests so far")
            injected = time.monotonic()
            try:
                injected = fault.inject(harness) or injected
                time.sleep(fault.hold_s)
            finally:
                fault.restore(harness)  # whatever happened, nothing stays dead or frozen
            windows.append(Window(fault.name, opened, injected, time.monotonic()))
            time.sleep(after_s)
        harness.traffic.stop_sending()
        unresolved = harness.traffic.drain(time.monotonic() + settle_s, time.sleep)
        traffic_s = time.monotonic() - started
        say(f"  traffic done: {len(harness.traffic.requests):,} requests, {len(unresolved)} unresolved; settling ...")
        settled_s, timed_out = _settle(harness, settle_s, say)
        say("  settled; accounting")
        view = harness.ledger_view()
        accounting = account(
            harness.traffic.requests, windows, view, harness.opening, harness.events, harness.erp_booked()
        )
    finally:
        harness.stop()
        if "function-pause" in names:
            stack.stop_service(f"{FROZEN_FUNCTION}-second")
    from bench import events

    violations = events.money_violations(stack)
    pending = harness.outbox_pending()
    erp_line = _erp_recovery(harness, "erp-kill" in names)
    redelivered = sum(harness.events[t] - 1 for t in view.transactions if harness.events[t] > 1)
    clean = accounting.clean and not violations and not pending and not harness.unexercised and not timed_out
    requests = harness.traffic.requests
    lines = [
        f"Traffic: {rate:g} requests/s for {traffic_s:.0f} s, {len(requests):,} requests"
        f" ({sum(1 for r in requests if r.action == 'message'):,} of them Pub/Sub messages),"
        f" {len(view.transactions):,} ledger transactions.",
        f"Postings on the run's wallets under keys no request sent: {len(accounting.phantom)}.",
        f"Run wallets whose balance is not their opening balance plus what the answered requests moved:"
        f" {len(accounting.balances_off)} of {len(harness.opening)}"
        + (
            f" (wallet: expected, found: {dict(list(accounting.balances_off.items())[:5])})"
            if accounting.balances_off
            else ""
        )
        + ".",
        f"Events delivered more than once (a relay died, Pub/Sub redelivered; consumers dedupe on the event id):"
        f" {redelivered:,}.",
        *([erp_line] if erp_line else []),
        f"Requests sent again by the HTTP client after a connection dropped before any answer (not counted as"
        f" attempts): {resent.value:,}.",
        f"Outbox pending afterwards: {pending}; everything delivered {settled_s:.0f} s after the traffic"
        + (f" (NOT: gave up waiting after {settle_s:.0f} s)" if timed_out else "")
        + ".",
        f"Money invariants: {'hold' if not violations else violations}.",
        *harness.notes,
        *([_takeover(harness, stack.settings().idempotency_lease_s)] if harness.watched else []),
        *[f"NOT EXERCISED: {what}." for what in harness.unexercised],
    ]
    text = table(accounting.rows, accounting.total) + "\n\n" + "\n".join(f"- {line}" for line in lines)
    return Outcome(text, clean, accounting, requests, windows)


def _takeover(harness: Harness, lease_s: float) -> str:
    request = harness.watched
    assert request is not None
    answers = ", ".join(f"{a.status or a.code}" for _, _, a in request.attempts)
    outcome = (
        f"answered {request.final} after {request.answered_at - request.first_sent:.1f} s"
        if request.final and request.answered_at is not None
        else "never answered"
    )
    return (
        f"The usage held by the frozen instance (key claimed, posting committed while it was frozen): {outcome};"
        f" attempts: {answers}. A copy waiting on a held key asks Postgres whether it has posted; keys claimed"
        f" but not posted by the frozen instance are free once their {lease_s:g} s lease runs out (the in-flight"
        " column)."
    )


def _erp_recovery(harness: Harness, killed: bool) -> str:
    """What the ERP receiver's kill did to the export: the batches made while it was
    down, how many needed another delivery, and when the last was delivered."""
    if not killed or not harness.erp_killed_wall:
        return ""
    made, retried, last = harness.erp_batches_between(harness.erp_killed_wall, harness.erp_restored_wall)
    if not retried:
        harness.unexercised.append("erp killed: no export delivery failed while it was down")
    delivered = f", the last delivered {last - harness.erp_killed_wall:.1f} s after the kill" if last else ""
    return (
        f"ERP receiver down: {made} batches made meanwhile, {retried} delivered only after a failed attempt"
        f"{delivered} (the export's retry backoff)."
    )


def _settle(harness: Harness, settle_s: float, say: Callable[[str], None]) -> tuple[float, bool]:
    """Wait (the ticks keep running) until every transaction's event has reached the
    subscriber, the ERP has booked every transaction and the outbox has drained (a
    relay killed after publishing leaves its rows for the sweep, which takes rows 10 s
    old): (seconds waited, timed out)."""
    began = time.monotonic()
    while True:
        transactions = harness.ledger_view().transactions
        booked = harness.erp_booked()
        no_event = sum(1 for t in transactions if not harness.events.get(t))
        unbooked = sum(1 for t in transactions if not booked.get(t))
        pending = harness.outbox_pending()
        waited = time.monotonic() - began
        if not (no_event or unbooked or pending):
            return waited, False
        if waited > settle_s:
            return waited, True
        if int(waited) % 10 == 0:
            say(f"    waiting for {no_event:,} events, {unbooked:,} ERP bookings and {pending:,} pending in the outbox")
        time.sleep(1)


@click.command()
@click.option("--rate", default=30.0, show_default=True, help="Requests made per second (retries come on top).")
@click.option("--faults", "chosen", default=",".join(FAULTS), show_default=True, help="Which, in order.")
@click.option("--before", "before_s", default=8.0, show_default=True, help="Seconds of traffic before each fault.")
@click.option("--after", "after_s", default=12.0, show_default=True, help="Seconds of traffic after each restore.")
@click.option("--hold", "hold_s", default=3.0, show_default=True, help="Seconds a killed component stays down.")
@click.option("--pause", "pause_s", default=8.0, show_default=True, help="Seconds Postgres stays frozen.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack (the smoke test uses test).")
@click.option("--write", is_flag=True, help="Write bench/results/faults.md.")
@click.option("--crash-relay", is_flag=True, hidden=True, help="Be the relay instance that dies (internal).")
def main(
    rate: float,
    chosen: str,
    before_s: float,
    after_s: float,
    hold_s: float,
    pause_s: float,
    profile: str,
    write: bool,
    crash_relay: bool,
) -> None:
    if crash_relay:
        components.run_crashing_relay(profile)
        return
    stack = Stack(profile)
    names = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise click.BadParameter(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
    if not http_ok(f"http://127.0.0.1:{stack.ports['erp']}/health"):
        raise click.ClickException(f"the {profile} stack is not running (python -m emulators up)")
    stack.stop_service("scheduler")  # this run publishes its own ticks
    try:
        outcome = run(stack, names, rate, before_s, after_s, hold_s, pause_s, echo=lambda s: click.echo(s, err=True))
    finally:
        stack.start_scheduler()
    command = (
        f"python -m bench.faults --rate {rate:g} --faults {','.join(names)} --before {before_s:g} --after {after_s:g}"
        f" --hold {hold_s:g} --pause {pause_s:g}"
    )
    text = (
        "# Faults under load\n\n"
        f"`{command}`, {machine()}. One fault at a time while the traffic runs; every request retried under its"
        " own Idempotency-Key until final ([docs/fault-injection.md](../../docs/fault-injection.md)).\n\n"
        + outcome.text
        + "\n"
    )
    click.echo(text)
    if write:
        (RESULTS / "faults.md").write_text(text)
    if not outcome.clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
