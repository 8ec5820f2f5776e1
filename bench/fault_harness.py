"""The traffic of `make faults` on one stack, and what watches it: a subscriber of the
events topic, one of the results topic, the scheduler's ticks, and the reads of the
ledger and the ERP receiver the accounting needs."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.events import owner_sql
from bench.fault_accounting import LedgerView
from bench.fault_traffic import Attempt, Request, RetryingTraffic
from emulators.stack import PROJECT, REPO, Stack

METERING_TOPIC = "metering-usage"  # a publishing service's topic (docs/messages.md)
OPENING_BALANCE = 1_000_000
RESULT_WAIT_S = 10.0  # a publisher's own limit before it publishes the same message again


class Harness:
    """Requests made, sent and retried; events and results received; ticks published."""

    def __init__(self, stack: Stack, rate: float, workers: int, timeout_s: float, wallets: int = 200) -> None:
        from bench import setup
        from bench.http_client import Client
        from emulators import database

        self.stack = stack
        setup.register_caller(stack)
        database.seed_topic_principals(stack.owner_dsn(), PROJECT)
        self.asset = setup.ASSET
        self.wallets, self.empty_wallet = open_wallets(stack, self.asset, wallets)
        self.notes: list[str] = [catch_up(stack)]
        # the run's own: every transaction after this, and its event and ERP booking
        self.high_water = int(owner_sql(stack, "SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0])
        self.opening = {w: OPENING_BALANCE for w in self.wallets} | {self.empty_wallet: 0}
        self.urls = {name: [stack.function_url(name)] for name in ("topup", "usage", "transfer", "void")}
        self.run_id = uuid.uuid4().hex[:10]
        self.voidable: deque[int] = deque(maxlen=200)
        self.lock = threading.Lock()
        self.rng = random.Random(19)
        self.clients = threading.local()
        self._client = lambda: Client(timeout_s)
        self.results: dict[str, dict[str, Any]] = {}
        self.events: Counter[int] = Counter()
        self.stopping = threading.Event()
        self.traffic = RetryingTraffic(rate, self.make_request, self.send, time.monotonic, workers)
        self.phase = ""
        self.acked = threading.Event()  # set at every 2xx: a crash can come right after one
        self.acked_at = 0.0
        # HTTP attempts sent and not yet answered: action -> {attempt: when sent}
        self.in_flight: dict[str, dict[int, float]] = {name: {} for name in self.urls}
        self._attempts = itertools.count()
        self.unexercised: list[str] = []  # faults that found nothing to strike
        self.pubsub_killed_wall = 0.0  # when the Pub/Sub emulator was last killed (epoch seconds)
        self.watched: Request | None = None  # the request a frozen instance held the key of
        self.erp_killed_wall = self.erp_restored_wall = 0.0

    # requests

    def make_request(self, index: int, intended: float) -> Request:
        with self.lock:
            roll = self.rng.random()
            wallet = self.rng.choice(self.wallets)
            key = f"faults-{self.run_id}-{index}"
            ref = f"{key}-ref"
            usage = {"wallet_id": wallet, "asset": self.asset, "amount": 1, "usage_id": ref, "product": "faults"}
            if roll < 0.15:
                return Request(index, "message", key, usage, self.phase)
            if roll < 0.30:
                body = {"wallet_id": wallet, "asset": self.asset, "amount": 10, "external_ref": ref}
                return Request(index, "topup", key, body, self.phase)
            if roll < 0.35:
                # more than the empty wallet holds: the ledger must refuse it, every time
                body = {**usage, "wallet_id": self.empty_wallet, "amount": 5}
                return Request(index, "usage", key, body, self.phase, expect_refused=True)
            if roll < 0.45:
                other = self.rng.choice([w for w in self.wallets if w != wallet])
                body = {"from_wallet_id": wallet, "to_wallet_id": other, "asset": self.asset, "amount": 1}
                return Request(index, "transfer", key, body, self.phase)
            if roll < 0.50 and self.voidable:
                body = {"transaction_id": self.voidable.popleft(), "reason": "faults"}
                return Request(index, "void", key, body, self.phase)
            return Request(index, "usage", key, usage, self.phase)

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
        token = next(self._attempts)
        with self.lock:
            self.in_flight[request.action][token] = time.monotonic()
        try:
            response = client.post(url, request.body, headers={"Idempotency-Key": request.key})
        except Exception as error:  # noqa: BLE001 - every failure is retried, and counted by name
            return Attempt(0, type(error).__name__)
        finally:
            with self.lock:
                del self.in_flight[request.action][token]
        try:
            body = response.json()
        except ValueError:
            return Attempt(response.status_code, "not JSON")
        retry_after = float(response.headers.get("Retry-After") or 0)
        if response.status_code < 300:
            self.acked_at = time.monotonic()
            self.acked.set()
            transaction_id = body["transaction"]["id"]
            if request.action == "usage":
                with self.lock:
                    self.voidable.append(transaction_id)
            return Attempt(response.status_code, "", transaction_id)
        return Attempt(response.status_code, (body.get("error") or {}).get("code", ""), None, retry_after)

    def _publish(self, request: Request) -> Attempt:
        """Publish the usage as a message, then wait for its result; no result in time is
        a failed attempt, and the retry publishes the same message again."""
        if (result := self.results.get(request.key)) is None:
            data = json.dumps({"action": "usage", "idempotency_key": request.key, "request": request.body}).encode()
            try:
                self.publisher.publish(self.metering_topic, data).result(timeout=5)
            except Exception as error:  # noqa: BLE001 - the emulator down: publish again later
                return Attempt(0, f"publish {type(error).__name__}")
            deadline = time.monotonic() + RESULT_WAIT_S
            while (result := self.results.get(request.key)) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if result is None:
                return Attempt(0, f"no result in {RESULT_WAIT_S:g} s")
        status = result["status"]
        if status in ("posted", "replayed"):
            return Attempt(201, "", result["transaction"]["id"])
        code = (result.get("error") or {}).get("code", status)
        return Attempt(422 if status == "refused" else 403 if status == "forbidden" else 400, code)

    @contextmanager
    def holding_wallet(self) -> Iterator[tuple[int, Callable[[float], bool]]]:
        """A run wallet's row locked, as the run's owner, until the block ends: a posting
        on it waits in Postgres, after its key is claimed. Yields the wallet and
        `blocked(within_s)`: whether a session has come to wait on the row."""
        import pg8000.native

        wallet = self.wallets[0]
        con = pg8000.native.Connection(**self.stack.owner_dsn())

        def blocked(within_s: float) -> bool:
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline:
                waiting = con.run(
                    "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))"
                )[0][0]
                if waiting:
                    return True
                time.sleep(0.01)
            return False

        try:
            con.run("BEGIN")
            con.run("SELECT id FROM ledger.wallets WHERE id = :w FOR UPDATE", w=wallet)
            yield wallet, blocked
        finally:
            con.run("ROLLBACK")
            con.close()

    def posted_under(self, key: str, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if owner_sql(self.stack, "SELECT 1 FROM ledger.transactions WHERE idempotency_key = :k", k=key):
                return True
            time.sleep(0.05)
        return False

    def frozen_request(self, action: str, wallet: int) -> Request:
        """A usage of `wallet`, sent now to `action`'s function, under a key of its own."""
        key = f"faults-{self.run_id}-held"
        body = {"wallet_id": wallet, "asset": self.asset, "amount": 1, "usage_id": f"{key}-ref", "product": "faults"}
        request = Request(-1, action, key, body, self.phase)
        self.traffic.submit(request)
        return request

    def mid_request(self, action: str, age_s: float = 0.004, within_s: float = 5.0) -> bool:
        """Wait until a request to `action`'s function has been in flight for `age_s`:
        long enough to have claimed its key, most likely not to have answered (a fault
        must meet one half-done); False if none came within `within_s`."""
        deadline = time.monotonic() + within_s
        while True:
            now = time.monotonic()
            with self.lock:
                if any(now - sent >= age_s for sent in self.in_flight[action].values()):
                    return True
            if now > deadline:
                return False
            time.sleep(0.0005)

    # observers

    def start_observers(self) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.metering_topic = self.publisher.topic_path(PROJECT, METERING_TOPIC)
        settings = self.stack.settings()
        self.subscriptions = {
            f"faults-events-{self.run_id}": (settings.events_topic, self._event),
            f"faults-results-{self.run_id}": (settings.action_results_topic, self._result),
        }
        self.subscribe_all()
        for name, (topic, handle) in self.subscriptions.items():
            threading.Thread(target=self._pull, args=(name, topic, handle), daemon=True).start()
        threading.Thread(target=self._tick, daemon=True).start()

    def subscribe_all(self) -> None:
        for name, (topic, _) in self.subscriptions.items():
            self.stack.pull_subscription(name, topic)

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
                    self.stack.pull_subscription(name, topic)
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

    # reads

    def ledger_view(self) -> LedgerView:
        keys = {r.key for r in self.traffic.requests}
        by_key: dict[str, list[int]] = {}
        phantom = []
        for key, transaction_id in owner_sql(
            self.stack,
            "SELECT DISTINCT t.idempotency_key, t.id FROM ledger.transactions t"
            " JOIN ledger.entries e ON e.transaction_id = t.id"
            " WHERE t.id > :h AND e.wallet_id = ANY (CAST(:w AS bigint[])) ORDER BY t.id",
            h=self.high_water,
            w=list(self.opening),
        ):
            if key in keys:
                by_key.setdefault(str(key), []).append(int(transaction_id))
            else:
                phantom.append(int(transaction_id))
        transactions = [
            int(r[0])
            for r in owner_sql(self.stack, "SELECT id FROM ledger.transactions WHERE id > :h", h=self.high_water)
        ]
        balances = {
            int(w): int(b)
            for w, b in owner_sql(
                self.stack,
                "SELECT id, balance FROM ledger.wallets WHERE id = ANY (CAST(:w AS bigint[]))",
                w=list(self.opening),
            )
        }
        return LedgerView(by_key, phantom, transactions, balances)

    def erp_booked(self) -> dict[int, int]:
        url = f"http://127.0.0.1:{self.stack.ports['erp']}/transactions?after={self.high_water}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return {int(t): n for t, n in json.loads(response.read())["transactions"].items()}
        except OSError:
            return {}

    def requeue_unseen_events(self, since_wall: float) -> int:
        """Mark again as pending the events marked published since `since_wall` (epoch
        seconds) that the subscriber never got, so the sweeper publishes them again. The
        Pub/Sub emulator loses, when killed, what it had accepted and not delivered;
        Google Cloud's Pub/Sub stores an accepted message before it answers. This stands
        in for that durability, and only for the emulator's last moments."""
        rows = owner_sql(
            self.stack,
            "SELECT transaction_id FROM ledger.outbox WHERE transaction_id > :h"
            " AND published_at >= to_timestamp(:since)",
            h=self.high_water,
            since=since_wall,
        )
        unseen = [int(r[0]) for r in rows if not self.events.get(int(r[0]))]
        if unseen:
            owner_sql(
                self.stack,
                "UPDATE ledger.outbox SET published_at = NULL WHERE transaction_id = ANY (CAST(:ids AS bigint[]))",
                ids=unseen,
            )
        return len(unseen)

    def outbox_pending(self) -> int:
        return int(
            owner_sql(
                self.stack,
                "SELECT count(*) FROM ledger.outbox WHERE published_at IS NULL AND transaction_id > :h",
                h=self.high_water,
            )[0][0]
        )

    def erp_batches_between(self, since_wall: float, until_wall: float) -> tuple[int, int, float | None]:
        """The ERP batches made between two moments (epoch seconds): how many, how many
        needed more than one delivery, and when the last of them was delivered."""
        count, retried, last = owner_sql(
            self.stack,
            "SELECT count(*), count(*) FILTER (WHERE attempts > 1), extract(epoch FROM max(delivered_at))::float8"
            " FROM erp.batches WHERE created_at BETWEEN to_timestamp(:a) AND to_timestamp(:b)",
            a=since_wall,
            b=until_wall,
        )[0]
        return int(count), int(retried), last

    def stop(self) -> None:
        """Stop the traffic's threads and the observers, and drop the run's subscriptions."""
        self.traffic.stop()
        self.stopping.set()
        for name in getattr(self, "subscriptions", {}):
            try:
                self.stack.delete_subscription(name)
            except OSError:
                pass


def catch_up(stack: Stack) -> str:
    """Publish what the outbox holds and export what the ERP has not had (the run's own
    setup among it), before the traffic: a backlog from before the run (the test
    suite's, a bench's) would otherwise be swept and exported during it, by ticks every
    2 s that overlap each other. Returns what it did, for the run's notes."""
    done = []
    for command in ("sweep", "export"):
        began = time.monotonic()
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "emulators", "--profile", stack.profile, "run", "--operator"]
                + [sys.executable, "-m", "common.ops", command],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=300,
            )
            outcome = "done" if finished.returncode == 0 else f"exit {finished.returncode}: {finished.stdout[-200:]}"
        except subprocess.TimeoutExpired:
            outcome = "still going after 300 s"
        done.append(f"ops {command} {outcome} ({time.monotonic() - began:.1f} s)")
    return "Before the traffic: " + "; ".join(done) + "."


def open_wallets(stack: Stack, asset: str, count: int) -> tuple[list[int], int]:
    """`count` wallets of the run's own, each funded by a top-up of OPENING_BALANCE (as the
    ledger's rules want), and an empty one."""
    prefix = f"faults-{uuid.uuid4().hex[:8]}-"
    if not owner_sql(stack, "SELECT 1 FROM ledger.assets WHERE code = :a", a=asset):
        owner_sql(stack, "SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'benchmark units')", a=asset)
    ids = [
        int(row[0])
        for row in owner_sql(
            stack,
            "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT :p || g, :a FROM generate_series(0, :n) g"
            " ORDER BY g RETURNING id",
            p=prefix,
            a=asset,
            n=count,
        )
    ]
    empty, funded = ids[0], ids[1:]
    funding = owner_sql(
        stack,
        "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'funding' AND asset_code = :a",
        a=asset,
    )[0][0]
    owner_sql(
        stack,
        "SELECT ledger.commit_posting(:p || w, 'faults-setup', 'topup', :a, :amount, w, NULL,"
        " ARRAY[CAST(:f AS bigint), w], ARRAY[-CAST(:amount AS bigint), :amount], :p || w)"
        " FROM unnest(CAST(:ws AS bigint[])) w",
        p=prefix,
        a=asset,
        amount=OPENING_BALANCE,
        f=funding,
        ws=funded,
    )
    return funded, empty
