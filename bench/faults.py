"""`make faults`: kill or freeze each component while traffic flows, then account for
every request, posting, event and ERP booking.

Traffic (bench/fault_traffic.py) runs at a fixed rate for the whole run: the HTTP mix
(top-ups, usages, transfers, voids, and usages on an empty wallet that the ledger must
refuse) plus usages published as Pub/Sub messages to the actions function. Every
request is retried under its own Idempotency-Key until it has a final answer. Ticks
for the outbox sweeper and the ERP export are published every two seconds, so events
and ERP batches flow throughout.

The faults, one at a time, each with its own window of traffic before and after:
SIGKILL of Postgres (every process: a crash, then crash recovery), Redis, the
Firestore emulator, the Pub/Sub emulator, one function's process mid-request, the ERP
receiver mid-export and a relay instance between publishing events and marking them
published; SIGSTOP then SIGCONT of Postgres and of one function's process, held past
the Redis lock TTL and, for the function, past the idempotency lease, so a second
instance takes the key over while the first is frozen.

Afterwards (bench/fault_accounting.py): each request's postings under its key, the
events a subscriber of the events topic received, what the ERP receiver booked, the
money invariants, and the outbox drained. A table per fault goes to stdout and, with
`--write`, to bench/results/faults.md. Exits 1 if anything was lost, duplicated,
left unresolved or undelivered, or an invariant broke.

    python -m bench.faults [--rate 30] [--faults postgres-kill,usage-kill,...] [--write]
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench import processes
from bench.fault_accounting import LedgerView, Row, Window, account, lost_in_emulator, table
from bench.fault_traffic import Attempt, Request, RetryingTraffic
from bench.report import RESULTS, machine
from emulators.stack import FUNCTIONS, PROJECT, REPO, Stack, group_alive, http_ok, port_open, wait_for

METERING_TOPIC = "metering-usage"  # a publishing service's topic (docs/messages.md)
PAUSED_FUNCTION = "usage"


# Components: how each is killed, frozen and brought back ------------------------------


def _postgres_pids(stack: Stack) -> list[int]:
    return processes.stack_processes(stack).get("postgres", [])


def signal_postgres(stack: Stack, sig: signal.Signals) -> float:
    """`sig` to the postmaster and every backend; returns when (monotonic) it was sent.
    The postmaster is stopped first, so it forks no new backend while the rest are signalled."""
    pids = _postgres_pids(stack)
    if not pids:
        raise click.ClickException("Postgres is not running")
    postmaster, children = pids[0], pids[1:]
    os.kill(postmaster, signal.SIGSTOP)
    children = sorted(set(children) | set(processes.stack_processes(stack).get("postgres", [])[1:]))
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


def _group(stack: Stack, name: str) -> int:
    pgid = json.loads((stack.state_dir / "state.json").read_text()).get(name)
    if not group_alive(pgid):
        raise click.ClickException(f"{name} is not running")
    return int(pgid)


def signal_group(stack: Stack, name: str, sig: signal.Signals) -> float:
    """`sig` to a spawned service's process group; returns when (monotonic) it was sent."""
    pgid = _group(stack, name)
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


def spawn_second_instance(stack: Stack, function: str) -> str:
    """Another process of `function` on a free port (what a second Cloud Run instance
    is): the URL clients fail over to while the first one is frozen."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **stack.function_env(function), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("FUNCTION_TARGET", None)
    stack._spawn(
        f"{function}-second",
        [
            str(Path(sys.executable).parent / "functions-framework"),
            *("--target", function, "--source", str(FUNCTIONS[function].source)),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: port_open(port), f"a second instance of {function}", 60)
    return url


def run_crashing_relay(profile: str) -> None:
    """A relay instance that dies between publishing events and marking them published:
    the sweeper's own Relay, its outbox's mark_published replaced by a SIGKILL of this
    process. Run in a process of its own (`python -m bench.faults --crash-relay`)."""
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
    sys.exit(3)


# The run --------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    inject: Callable[[Harness], float | None]  # returns the moment it struck, when it waited for one
    restore: Callable[[Harness], None]
    hold_s: float  # how long the component stays dead or frozen before it is brought back
    prepare: Callable[[Harness], None] | None = None  # before the fault's moment (a second instance)


class Harness:
    """The traffic's targets and observers on one stack."""

    def __init__(self, stack: Stack, rate: float, workers: int, timeout_s: float) -> None:
        from bench import setup
        from bench.http_client import Client

        self.stack = stack
        self.timeout_s = timeout_s
        from emulators import database

        setup.register_caller(stack)
        database.seed_topic_principals(stack.owner_dsn(), PROJECT)
        self.asset = setup.ASSET
        self.wallets, self.empty_wallet = _wallets(stack, self.asset, 200)
        self.urls: dict[str, list[str]] = {
            name: [stack.function_url(name)] for name in ("topup", "usage", "transfer", "void")
        }
        self.run_id = uuid.uuid4().hex[:10]
        self.high_water = _high_water(stack)
        # Events of the setup's postings (and of anything before the run) still pending are
        # for no consumer; swept during the run, tens of thousands of them would crowd out
        # the traffic, and two overlapping sweeps would publish them twice.
        _mark_published_up_to(stack, self.high_water)
        self.voidable: deque[int] = deque(maxlen=200)
        self.lock = threading.Lock()
        self.rng = random.Random(19)
        self.clients = threading.local()
        self._client = lambda: Client(timeout_s)
        self.results: dict[str, dict[str, Any]] = {}
        self.events: Counter[int] = Counter()
        self.stopping = threading.Event()
        self.traffic = RetryingTraffic(rate, self.make_request, self.send, time.monotonic, workers)
        self.phase = "warm-up"
        self.acked = threading.Event()  # set at every 2xx: a crash can come right after one
        self.acked_at = 0.0
        self.in_flight: Counter[str] = Counter()  # HTTP attempts sent and not yet answered, by action
        self.notes: list[str] = []

    # requests

    def make_request(self, index: int, intended: float) -> Request:
        with self.lock:
            roll = self.rng.random()
            wallet = self.rng.choice(self.wallets)
            key = f"faults-{self.run_id}-{index}"
            ref = f"{key}-ref"
            if roll < 0.15:
                body = {"wallet_id": wallet, "asset": self.asset, "amount": 1, "usage_id": ref, "product": "faults"}
                return Request(index, "message", key, body, self.phase)
            if roll < 0.30:
                body = {"wallet_id": wallet, "asset": self.asset, "amount": 10, "external_ref": ref}
                return Request(index, "topup", key, body, self.phase)
            if roll < 0.35:
                # more than the empty wallet holds: the ledger must refuse it, every time
                body = {"wallet_id": self.empty_wallet, "asset": self.asset, "amount": 5, "usage_id": ref}
                return Request(index, "usage", key, {**body, "product": "faults"}, self.phase)
            if roll < 0.45:
                body = {
                    "from_wallet_id": wallet,
                    "to_wallet_id": self.rng.choice(self.wallets),
                    "asset": self.asset,
                    "amount": 1,
                }
                return Request(index, "transfer", key, body, self.phase)
            if roll < 0.50 and self.voidable:
                body = {"transaction_id": self.voidable.popleft(), "reason": "faults"}
                return Request(index, "void", key, body, self.phase)
            body = {"wallet_id": wallet, "asset": self.asset, "amount": 1, "usage_id": ref, "product": "faults"}
            return Request(index, "usage", key, body, self.phase)

    def send(self, request: Request, number: int) -> Attempt:
        if request.action == "message":
            return self._publish(request)
        client = getattr(self.clients, "client", None)
        if client is None:
            client = self.clients.client = self._client()
        urls = self.urls[request.action]
        # a retry goes to the newest instance: a load balancer stops sending to one that
        # does not answer, but only after it failed someone (the first attempt)
        url = urls[0] if number == 0 else urls[-1]
        with self.lock:
            self.in_flight[request.action] += 1
        try:
            response = client.post(url, request.body, headers={"Idempotency-Key": request.key})
        except Exception as error:  # noqa: BLE001 - every failure is retried, and counted by name
            return Attempt(0, type(error).__name__)
        finally:
            with self.lock:
                self.in_flight[request.action] -= 1
        try:
            body = response.json()
        except ValueError:
            return Attempt(response.status_code, "not JSON")
        if response.status_code < 300:
            self.acked_at = time.monotonic()
            self.acked.set()
            transaction_id = body["transaction"]["id"]
            if request.action == "usage" and request.body["wallet_id"] != self.empty_wallet:
                with self.lock:
                    self.voidable.append(transaction_id)
            return Attempt(response.status_code, "", transaction_id)
        return Attempt(response.status_code, (body.get("error") or {}).get("code", ""))

    def _publish(self, request: Request) -> Attempt:
        """Publish the usage as a message, then wait for its result; no result in time is
        a failed attempt, and the retry publishes the same message again."""
        if (result := self.results.get(request.key)) is None:
            data = json.dumps({"action": "usage", "idempotency_key": request.key, "request": request.body}).encode()
            try:
                self.publisher.publish(self.metering_topic, data).result(timeout=5)
            except Exception as error:  # noqa: BLE001 - the emulator down: publish again later
                return Attempt(0, f"publish {type(error).__name__}")
            deadline = time.monotonic() + 10
            while (result := self.results.get(request.key)) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if result is None:
                return Attempt(0, "no result in 10 s")
        status = result["status"]
        if status in ("posted", "replayed"):
            return Attempt(201, "", result["transaction"]["id"])
        return Attempt(422 if status == "refused" else 400, status)

    # observers

    def start_observers(self) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.metering_topic = self.publisher.topic_path(PROJECT, METERING_TOPIC)
        settings = self.stack.settings()
        subscriptions = {
            f"faults-events-{self.run_id}": (settings.events_topic, self._event),
            f"faults-results-{self.run_id}": (settings.action_results_topic, self._result),
        }
        self.subscriptions = {name: topic for name, (topic, _) in subscriptions.items()}
        self.subscribe_all()
        for name, (topic, handle) in subscriptions.items():
            threading.Thread(target=self._pull, args=(name, topic, handle), daemon=True).start()
        threading.Thread(target=self._tick, daemon=True).start()

    def subscribe_all(self) -> None:
        for name, topic in self.subscriptions.items():
            self._subscribe(name, topic)

    def _subscribe(self, name: str, topic: str) -> None:
        self.stack._pubsub_put(f"topics/{topic}", None)
        self.stack._pubsub_put(
            f"subscriptions/{name}", {"topic": f"projects/{PROJECT}/topics/{topic}", "ackDeadlineSeconds": 60}
        )

    def _pull(self, name: str, topic: str, handle: Callable[[Any], None]) -> None:
        """Pull and acknowledge until stopped; after the emulator's restart (which forgets
        every subscription) subscribe again."""
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        path = subscriber.subscription_path(PROJECT, name)
        while not self.stopping.is_set():
            try:
                response = subscriber.pull(request={"subscription": path, "max_messages": 500}, timeout=5, retry=None)
                for received in response.received_messages:
                    handle(received.message)
                if response.received_messages:
                    subscriber.acknowledge(
                        request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]}
                    )
            except Exception:  # noqa: BLE001 - the emulator down or restarted: subscribe again
                time.sleep(0.5)
                try:
                    self._subscribe(name, topic)
                except OSError:
                    pass

    def _event(self, message: Any) -> None:
        self.events[int(message.attributes["event_id"])] += 1

    def _result(self, message: Any) -> None:
        if message.attributes.get("key", "").startswith(f"faults-{self.run_id}-"):
            self.results.setdefault(message.attributes["key"], json.loads(message.data))

    def _tick(self) -> None:
        """The scheduler's ticks, every 2 s: sweep the outbox, export to the ERP."""
        settings = self.stack.settings()
        while not self.stopping.is_set():
            for topic in (settings.outbox_sweep_tick_topic, settings.erp_export_tick_topic):
                try:
                    self.stack.publish(topic)
                except OSError:
                    pass  # Pub/Sub down: the next tick
            time.sleep(2)


def _wallets(stack: Stack, asset: str, count: int) -> tuple[list[int], int]:
    """`count` funded wallets of the run's own (each funded by a top-up, as the ledger's
    rules want), and an empty one."""
    import pg8000.native

    from bench import setup

    prefix = f"faults-{uuid.uuid4().hex[:8]}-"
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        if not con.run("SELECT 1 FROM ledger.assets WHERE code = :a", a=asset):
            con.run("SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'benchmark units')", a=asset)
        ids = [
            row[0]
            for row in con.run(
                "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT :p || g, :a FROM generate_series(0, :n) g"
                " ORDER BY g RETURNING id",
                p=prefix,
                a=asset,
                n=count,
            )
        ]
        empty, funded = ids[0], ids[1:]
        con.run(
            "SELECT ledger.commit_posting(:p || w, 'faults-setup', 'topup', :a, 1000000, w, NULL,"
            " ARRAY[CAST(:f AS bigint), w], ARRAY[-1000000, 1000000]::bigint[], :p || w)"
            " FROM unnest(CAST(:ws AS bigint[])) w",
            p=prefix,
            a=asset,
            f=setup.system_account(con, "funding"),
            ws=funded,
        )
        return funded, empty
    finally:
        con.close()


def _mark_published_up_to(stack: Stack, last: int) -> None:
    import pg8000.native

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        con.run(
            "UPDATE ledger.outbox SET published_at = clock_timestamp()"
            " WHERE transaction_id <= :h AND published_at IS NULL",
            h=last,
        )
    finally:
        con.close()


def _high_water(stack: Stack) -> int:
    import pg8000.native

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return con.run("SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0]
    finally:
        con.close()


def faults(harness: Harness, hold_s: float, pause_s: float) -> dict[str, Fault]:
    stack = harness.stack

    def kill(name: str) -> Fault:
        return Fault(
            f"{name} killed",
            lambda h: signal_group(stack, name, signal.SIGKILL),
            lambda h: stack.start_service(name),
            hold_s,
        )

    def mid_request(h: Harness, function: str) -> None:
        """Wait (up to 5 s) until a request to `function` is in flight: the fault must
        meet one half-done."""
        deadline = time.monotonic() + 5
        while h.in_flight[function] == 0 and time.monotonic() < deadline:
            time.sleep(0.0005)

    def crash_relay_process(h: Harness) -> float | None:
        done = subprocess.run(
            [sys.executable, "-m", "bench.faults", "--crash-relay", "--profile", stack.profile],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=60,
        )
        outcome = "killed between publishing and marking" if done.returncode == -signal.SIGKILL else "did not crash"
        h.notes.append(f"relay instance: {outcome}. {done.stdout.strip()} {done.stderr.strip()[-300:]}".strip())
        return None

    def second_instance(h: Harness) -> None:
        h.urls[PAUSED_FUNCTION].append(spawn_second_instance(stack, PAUSED_FUNCTION))

    def pause_function(h: Harness) -> float:
        mid_request(h, PAUSED_FUNCTION)
        return signal_group(stack, PAUSED_FUNCTION, signal.SIGSTOP)

    def restart_pubsub(h: Harness) -> None:
        # The emulator forgets topics and subscriptions (Google Cloud's Pub/Sub keeps
        # them): the subscriber's are made again before the ledger's topics exist, so no
        # event published after the restart goes to a topic without them.
        stack.start_pubsub(topics=False)
        h.subscribe_all()
        stack.create_topics()

    def resume_function(h: Harness) -> None:
        signal_group(stack, PAUSED_FUNCTION, signal.SIGCONT)

    def crash_postgres_after_an_ack(h: Harness) -> float:
        # right after a posting was acknowledged: what the client holds must survive
        h.acked.clear()
        h.acked.wait(timeout=5)
        killed = signal_postgres(stack, signal.SIGKILL)
        h.notes.append(f"Postgres was killed {(killed - h.acked_at) * 1000:.1f} ms after the last acknowledgement.")
        return killed

    def restart_postgres(h: Harness) -> None:
        stack.start_postgres()

    return {
        "postgres-kill": Fault("postgres killed", crash_postgres_after_an_ack, restart_postgres, hold_s),
        "redis-kill": kill("redis"),
        "firestore-kill": kill("firestore"),
        "pubsub-kill": Fault(
            "pubsub killed", lambda h: signal_group(stack, "pubsub", signal.SIGKILL), restart_pubsub, hold_s
        ),
        "function-kill": Fault(
            "usage killed mid-request",
            lambda h: (mid_request(h, "usage"), signal_group(stack, "usage", signal.SIGKILL))[1],
            lambda h: stack.start_service("usage"),
            hold_s,
        ),
        "erp-kill": kill("erp"),
        "relay-kill": Fault("relay killed between publishing and marking", crash_relay_process, lambda h: None, 0),
        "postgres-pause": Fault(
            "postgres frozen",
            lambda h: signal_postgres(stack, signal.SIGSTOP),
            lambda h: signal_postgres(stack, signal.SIGCONT),
            pause_s,
        ),
        "function-pause": Fault(
            "usage frozen", pause_function, resume_function, stack.settings().idempotency_lease_s + 5, second_instance
        ),
    }


ALL_FAULTS = (
    "postgres-kill",
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
    rows: list[Row]


def run(
    stack: Stack,
    names: list[str],
    rate: float,
    before_s: float,
    after_s: float,
    hold_s: float,
    pause_s: float,
    workers: int = 64,
    timeout_s: float = 5.0,
    settle_s: float = 120.0,
    echo: Callable[[str], None] = print,
) -> Outcome:
    began = time.monotonic()
    plain = echo

    def echo(line: str) -> None:  # noqa: F811 - each line with the run's clock
        plain(f"{time.monotonic() - began:6.1f} s {line}")

    os.environ.update(stack.in_process_env())
    harness = Harness(stack, rate, workers, timeout_s)
    echo("  set up; traffic starts")
    catalogue = faults(harness, hold_s, pause_s)
    harness.phase = catalogue[names[0]].name
    harness.start_observers()
    harness.traffic.start()
    windows: list[Window] = []
    started = time.monotonic()
    try:
        for name in names:
            fault = catalogue[name]
            opened = time.monotonic()
            harness.phase = fault.name
            time.sleep(before_s)
            echo(f"  {fault.name}: {len(harness.traffic.requests):,} requests so far")
            if fault.prepare:
                fault.prepare(harness)
            injected = time.monotonic()
            injected = fault.inject(harness) or injected
            time.sleep(fault.hold_s)
            fault.restore(harness)
            restored = time.monotonic()
            windows.append(Window(fault.name, opened, injected, restored))
            time.sleep(after_s)
    finally:
        harness.traffic.stop_sending()
        unresolved = harness.traffic.drain(time.monotonic() + settle_s, time.sleep)
        if any(name == "function-pause" for name in names):
            stack.stop_service(f"{PAUSED_FUNCTION}-second")
    traffic_s = time.monotonic() - started
    echo(f"  traffic done: {len(harness.traffic.requests):,} requests, {len(unresolved)} unresolved; settling ...")
    emulator_killed = [w.started for w in windows if w.name == "pubsub killed"]
    view, settled_s = _settle(harness, settle_s, emulator_killed, echo)
    echo("  settled; accounting")
    harness.stopping.set()
    rows, total, phantom = account(
        harness.traffic.requests, windows, view, harness.events, _erp_booked(harness), emulator_killed
    )
    from bench import events

    violations = events.money_violations(stack)
    pending = _outbox_pending(stack, harness.high_water)
    erp_retried = _erp_batches_retried(stack, harness.high_water)
    redelivered = sum(harness.events[t] - 1 for t in view.transactions if harness.events[t] > 1)
    clean = all(r.clean for r in rows) and total.clean and not phantom and not violations and not pending
    text = (
        table(rows, total)
        + "\n\n"
        + "\n".join(
            [
                f"- Traffic: {rate:g} requests/s for {traffic_s:.0f} s, {len(harness.traffic.requests):,} requests"
                f" ({sum(1 for r in harness.traffic.requests if r.action == 'message'):,} of them Pub/Sub messages),"
                f" {len(view.transactions):,} ledger transactions.",
                f"- Postings under keys no request sent: {len(phantom)}.",
                f"- Events delivered more than once (a relay dies or Pub/Sub redelivers; consumers dedupe on the"
                f" event id): {redelivered:,}.",
                f"- ERP batches delivered only after a failed attempt (the receiver down mid-export): {erp_retried}.",
                f"- Outbox pending afterwards: {pending}; everything settled {settled_s:.0f} s after the traffic.",
                f"- Money invariants: {'hold' if not violations else violations}.",
                *[f"- {note}" for note in harness.notes],
            ]
        )
    )
    return Outcome(text, clean, rows)


def _settle(
    harness: Harness, settle_s: float, emulator_killed: list[float], echo: Callable[[str], None]
) -> tuple[LedgerView, float]:
    """Wait (the ticks keep running) until every transaction's event reached the
    subscriber and the ERP booked every exported transaction, or `settle_s` passes."""
    began = time.monotonic()
    while True:
        view = _ledger_view(harness)
        booked = _erp_booked(harness)
        no_event = sum(
            1
            for t in view.transactions
            if not harness.events.get(t) and not lost_in_emulator(view.published_at.get(t), emulator_killed)
        )
        unbooked = sum(1 for t in view.erp_transactions if not booked.get(t))
        if not (no_event or unbooked) or time.monotonic() - began > settle_s:
            return view, time.monotonic() - began
        if int(time.monotonic() - began) % 10 == 0:
            echo(f"    waiting for {no_event:,} events and {unbooked:,} ERP bookings")
        time.sleep(1)


def _ledger_view(harness: Harness) -> LedgerView:
    import pg8000.native

    con = pg8000.native.Connection(**harness.stack.owner_dsn())
    try:
        prefix = f"faults-{harness.run_id}-%"
        by_key: dict[str, list[int]] = {}
        keys = {r.key for r in harness.traffic.requests}
        phantom = []
        for key, transaction_id in con.run(
            "SELECT idempotency_key, id FROM ledger.transactions WHERE id > :h AND idempotency_key LIKE :p ORDER BY id",
            h=harness.high_water,
            p=prefix,
        ):
            if key in keys:
                by_key.setdefault(key, []).append(transaction_id)
            else:
                phantom.append(transaction_id)
        transactions, published_at = [], {}
        # the outbox's clock is the machine's: to the run's monotonic clock
        offset = time.monotonic() - time.time()
        for transaction_id, published in con.run(
            "SELECT t.id, extract(epoch FROM o.published_at)::float8 FROM ledger.transactions t"
            " LEFT JOIN ledger.outbox o ON o.transaction_id = t.id WHERE t.id > :h",
            h=harness.high_water,
        ):
            transactions.append(transaction_id)
            if published is not None:
                published_at[transaction_id] = published + offset
        exported = [
            r[0]
            for r in con.run(
                "SELECT t.id FROM ledger.transactions t"
                " LEFT JOIN ledger.transactions o ON o.id = t.voids_transaction_id"
                " WHERE t.id > :h AND NOT coalesce(o.action, t.action) = ANY (erp.migration_actions())",
                h=harness.high_water,
            )
        ]
    finally:
        con.close()
    return LedgerView(by_key, phantom, transactions, exported, published_at)


def _erp_booked(harness: Harness) -> dict[int, int]:
    url = f"http://127.0.0.1:{harness.stack.ports['erp']}/transactions?after={harness.high_water}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return {int(t): n for t, n in json.loads(response.read())["transactions"].items()}
    except OSError:
        return {}


def _erp_batches_retried(stack: Stack, after: int) -> int:
    import pg8000.native

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return con.run("SELECT count(*) FROM erp.batches WHERE last_id > :h AND attempts > 1", h=after)[0][0]
    finally:
        con.close()


def _outbox_pending(stack: Stack, after: int) -> int:
    import pg8000.native

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return con.run(
            "SELECT count(*) FROM ledger.outbox WHERE published_at IS NULL AND transaction_id > :h", h=after
        )[0][0]
    finally:
        con.close()


@click.command()
@click.option("--rate", default=30.0, show_default=True, help="Requests made per second (retries come on top).")
@click.option("--faults", "chosen", default=",".join(ALL_FAULTS), show_default=True, help="Which, in order.")
@click.option("--before", "before_s", default=8.0, show_default=True, help="Seconds of traffic before each fault.")
@click.option("--after", "after_s", default=12.0, show_default=True, help="Seconds of traffic after each restore.")
@click.option("--hold", "hold_s", default=3.0, show_default=True, help="Seconds a killed component stays down.")
@click.option("--pause", "pause_s", default=8.0, show_default=True, help="Seconds Postgres stays frozen.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack (the smoke test uses test).")
@click.option("--write", is_flag=True, help="Write bench/results/faults.md.")
@click.option("--crash-relay", is_flag=True, hidden=True, help="Run the relay instance that dies (internal).")
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
        run_crashing_relay(profile)
        return
    stack = Stack(profile)
    names = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ALL_FAULTS))
    if unknown:
        raise click.BadParameter(f"unknown faults {unknown}; choose from {', '.join(ALL_FAULTS)}")
    if not http_ok(f"http://127.0.0.1:{stack.ports['erp']}/health"):
        raise click.ClickException(f"the {profile} stack is not running (python -m emulators up)")
    stack.stop_service("scheduler")  # this run publishes its own ticks
    outcome = run(stack, names, rate, before_s, after_s, hold_s, pause_s, echo=lambda s: click.echo(s, err=True))
    command = (
        f"python -m bench.faults --rate {rate:g} --faults {','.join(names)} --before {before_s:g} --after {after_s:g}"
        f" --hold {hold_s:g} --pause {pause_s:g}"
    )
    text = (
        "# Faults under load\n\n"
        f"`{command}`, {machine()}. One fault at a time while the traffic runs; every request retried under its"
        " own Idempotency-Key until final (docs/fault-injection.md).\n\n" + outcome.text + "\n"
    )
    click.echo(text)
    if write:
        (RESULTS / "faults.md").write_text(text)
    if not outcome.clean:
        sys.exit(1)


if __name__ == "__main__":
    main()
