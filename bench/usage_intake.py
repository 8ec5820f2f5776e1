"""`make bench-intake`: bulk usage records through the Pub/Sub emulator, publish to result.

On the running dev stack (`python -m emulators up --no-demo`): funded wallets (bench/
setup.py), the metering topic registered as its principal, then N usage records
published to the metering topic in batches (`{"action": "usage_batch", ...}`), pushed
to the actions function, whose results come back on the results topic through a pull
subscription of the bench's own. At most `--window` batches are in flight: a batch is
published when an earlier one's result came back, so a record's latency (its batch's
publish to its result) is the intake's, not a queue of everything published at once.

Reports records/s (first publish to last result), per-record latency p50/p95/p99,
postings per database call (sum of posted over sum of db_calls), the peak RSS of the
actions function's processes and of the bench, then checks in SQL that every usage id
posted exactly once and that `python -m common.reconcile` passes. Also, in-process, what
taking the wallets' Redis locks would add to a batch (docs/decisions.md, issue 15).
Results: bench/results/usage_intake.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import processes, setup
from bench.report import RESULTS, machine
from emulators.stack import PROJECT, Stack, StackError

TOPIC = "metering-usage"
TENANT = "metering"  # the metering topic's principal (emulators/database.py TOPIC_PRINCIPALS)


@dataclass
class Run:
    records: int
    batch: int
    sent_at: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    answered_at: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    db_calls: int = 0
    duplicates: int = 0  # results of a batch after its first (a redelivered push)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, batch_id: str, body: dict[str, Any], at: float) -> None:
        with self.lock:
            if batch_id not in self.sent_at:
                return  # another run's
            if batch_id in self.answered_at:
                self.duplicates += 1
                return
            self.answered_at[batch_id] = at
            for status, count in body["counts"].items():
                self.counts[status] = self.counts.get(status, 0) + count
            self.db_calls += body["db_calls"]
            if len(self.answered_at) * self.batch >= self.records:
                self.done.set()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def peak_rss_mib(pids: list[int]) -> float:
    """The sum of each process's peak resident set (VmHWM)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def publish_all(stack: Stack, run: Run, wallets: list[int], prefix: str, window: int) -> float:
    """Publish every batch, at most `window` unanswered; returns when the last result came."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, TOPIC)
    in_flight = threading.Semaphore(window)
    futures = []
    for number, start in enumerate(range(0, run.records, run.batch)):
        size = min(run.batch, run.records - start)
        records = [
            {
                "wallet_id": wallets[(start + i) % len(wallets)],
                "asset": setup.ASSET,
                "amount": 1,
                "usage_id": f"{prefix}-{start + i}",
                "product": "bench-intake",
            }
            for i in range(size)
        ]
        batch_id = f"{prefix}-b{number}"
        data = json.dumps({"action": "usage_batch", "batch_id": batch_id, "records": records}).encode()
        in_flight.acquire()
        with run.lock:
            run.sent_at[batch_id] = time.monotonic()
            run.sizes[batch_id] = size
        futures.append(publisher.publish(topic, data))
        threading.Thread(target=_release_when_answered, args=(run, batch_id, in_flight), daemon=True).start()
    for future in futures:
        future.result(timeout=60)
    if not run.done.wait(timeout=max(600, run.records / 100)):
        raise SystemExit(f"only {len(run.answered_at)} of {len(run.sent_at)} batches were answered")
    return max(run.answered_at.values())


def _release_when_answered(run: Run, batch_id: str, in_flight: threading.Semaphore) -> None:
    while batch_id not in run.answered_at and not run.done.is_set():
        time.sleep(0.005)
    in_flight.release()


def subscribe_results(run: Run, subscription: str) -> Callable[[], None]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()

    def received(message: Any) -> None:
        at = time.monotonic()
        message.ack()
        if message.attributes.get("action") == "usage_batch":
            run.answered(message.attributes["key"], json.loads(message.data), at)

    future = subscriber.subscribe(subscription, received)
    return lambda: (future.cancel(), subscriber.close())


def check_posted_once(stack: Stack, prefix: str, records: int) -> tuple[int, int]:
    import pg8000.native

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        [[count, distinct]] = con.run(
            "SELECT count(*), count(DISTINCT usage_id) FROM ledger.transactions"
            " WHERE tenant = :t AND action = 'usage' AND usage_id LIKE :p",
            t=TENANT,
            p=prefix + "-%",
        )
    finally:
        con.close()
    if count != records or distinct != records:
        raise SystemExit(f"posted {count} usages for {distinct} of {records} usage ids: not exactly once each")
    return count, distinct


def reconcile(stack: Stack) -> tuple[bool, str]:
    """`make reconcile`: the invariants over the whole ledger, as the operator; whether
    they hold, and what to report (with how long the check took)."""
    command = [sys.executable, "-m", "emulators", "--profile", stack.profile, "run", "--operator"]
    command += [sys.executable, "-m", "common.reconcile", "--full"]  # the whole ledger, not the daily run
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    took = f"{time.monotonic() - started:,.0f} s"
    if result.returncode == 0:
        return True, f"passes ({took})"
    if result.returncode == 1:
        return False, f"FAILS: violations ({took})"
    return False, f"did not finish ({took}): {result.stdout.strip()[-300:] or result.stderr.strip()[-300:]}"


def lock_cost(stack: Stack, wallets: list[int], batches: int, batch: int) -> tuple[float, float]:
    """In-process: ms per batch to post `batch` records over distinct wallets, and ms to
    take and release those wallets' Redis locks (what bulk would add if it took them)."""
    os.environ.update(stack.in_process_env())
    from common import bootstrap
    from common.auth.callers import SCOPES, Caller, Grant, Principal
    from common.config import get_settings

    get_settings.cache_clear()
    caller = Caller(
        Principal(
            "bench-intake",
            "bench",
            "bench-intake",
            "service",
            "bench-intake",
            None,
            (Grant("bench", frozenset(SCOPES), "all"),),
        ),
        request_id="bench-intake",
    )
    service, locks = bootstrap.service(), bootstrap.locks()
    posting_ms = locking_ms = 0.0
    for number in range(batches):
        chosen = wallets[(number * batch) % len(wallets) :][:batch]
        records = [
            {"wallet_id": w, "asset": setup.ASSET, "amount": 1, "usage_id": f"lock-{uuid.uuid4()}", "product": "b"}
            for w in chosen
        ]
        started = time.perf_counter()
        with ExitStack() as held:
            for wallet in sorted(chosen):
                held.enter_context(locks.wallet(wallet))
        locking_ms += (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        service.usage_batch(caller, records)
        posting_ms += (time.perf_counter() - started) * 1000
    return posting_ms / batches, locking_ms / batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=int(os.environ.get("N", 1_000_000)))
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=8, help="batches in flight at most")
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--lock-batches", type=int, default=5, help="in-process batches for the Redis locks' cost")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    parser.add_argument("--profile", default="dev", help="the stack: dev, or test (the smoke test)")
    args = parser.parse_args(argv)

    stack = Stack(args.profile)
    os.environ.update(stack.env())
    if "actions" not in processes.stack_processes(stack):
        raise StackError("the actions function is not running: start the dev stack (python -m emulators up)")
    from emulators import database

    data = setup.prepare(stack, args.wallets)
    database.seed_topic_principals(stack.owner_dsn(), PROJECT)
    prefix = f"intake-{uuid.uuid4().hex[:12]}"
    run = Run(args.records, args.batch)
    stop = subscribe_results(
        run, stack.pull_subscription(f"bench-intake-{prefix}", stack.settings().action_results_topic)
    )
    function_pids = processes.stack_processes(stack)["actions"]
    cpu_before = processes.cpu(stack)
    started = time.monotonic()
    try:
        last = publish_all(stack, run, data.wallets, prefix, args.window)
    finally:
        stop()
    elapsed = last - started
    # where the CPU went, per record ("load client": the bench itself)
    cpu_spent = processes.cpu_table(cpu_before, processes.cpu(stack), args.records, time.monotonic() - started)
    latencies = [(run.answered_at[b] - run.sent_at[b]) * 1000 for b in run.answered_at for _ in range(run.sizes[b])]
    posted = run.counts.get("posted", 0)
    count, _distinct = check_posted_once(stack, prefix, args.records)
    reconciled, reconciliation = reconcile(stack)
    per_batch_ms, locks_ms = lock_cost(stack, data.wallets, args.lock_batches, min(args.batch, len(data.wallets)))

    rows = [
        ("records", f"{args.records:,}"),
        ("batch size / in flight", f"{args.batch:,} / {args.window}"),
        ("wallets", f"{len(data.wallets):,}"),
        ("records/s (first publish to last result)", f"{args.records / elapsed:,.0f}"),
        ("per-record latency p50 / p95 / p99 ms", " / ".join(f"{percentile(latencies, p):,.0f}" for p in (50, 95, 99))),
        ("outcomes", ", ".join(f"{k} {v:,}" for k, v in sorted(run.counts.items()))),
        ("postings per database call", f"{posted / run.db_calls:.1f}" if run.db_calls else "–"),
        ("duplicate results (redelivered pushes)", f"{run.duplicates}"),
        ("peak RSS, actions function (MiB)", f"{peak_rss_mib(function_pids):,.0f}"),
        ("peak RSS, bench (MiB)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f}"),
        ("usage ids posted exactly once", f"yes ({count:,} postings)"),
        ("python -m common.reconcile", reconciliation),
        (f"in-process: posting a batch of {args.batch:,} over distinct wallets (ms)", f"{per_batch_ms:,.0f}"),
        (f"in-process: taking and releasing its {args.batch:,} wallets' Redis locks (ms)", f"{locks_ms:,.0f}"),
    ]
    table = "\n".join(["| measure | value |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)])
    table += "\n\nCPU while publishing and answering (per record; the bench is the load client):\n\n"
    table += cpu_spent.replace("per action", "per record")
    print(table)
    if not args.no_write:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        (RESULTS / "usage_intake.md").write_text(
            f"# Bulk usage intake through the Pub/Sub emulator\n\n`make bench-intake N={args.records}`, {when}, "
            f"{machine()}.\nWhat it measures and how: bench/usage_intake.py's docstring.\n\n{table}\n"
        )
    if not reconciled:
        raise SystemExit(f"python -m common.reconcile: {reconciliation}")


if __name__ == "__main__":
    main()
