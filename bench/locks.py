"""`python -m bench.locks`: SET calls per usage under a flood on one wallet's Redis lock,
redis-py's Lock polling every 2 ms (the lock before issue 14) against common's
RedisLocks (jittered backoff, bounded waiters), on the same Redis.

Each of `--waiters` threads takes the wallet's lock `--rounds` times and holds it for
`--hold-ms` (a usage's posting). The figure is Redis's own count of SET calls
(INFO commandstats) over the locks acquired; refusals (409) are counted apart.
Writes bench/results/locks.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import click
import redis

from common.adapters.redis_locks import RedisLocks
from common.errors import InProgress
from emulators.stack import Stack

RESULTS = Path(__file__).parent / "results" / "locks.md"


def polling_lock(client: redis.Redis, wait_ms: int) -> Callable[[int], AbstractContextManager[object]]:
    """The lock as it was: redis-py's Lock, polling SET NX every 2 ms up to the wait."""
    return lambda wallet: client.lock(
        f"bench:lock:{wallet}", timeout=5, sleep=0.002, blocking=True, blocking_timeout=wait_ms / 1000
    )


def flood(client: redis.Redis, take: Callable[[int], AbstractContextManager[object]], waiters: int, rounds: int,
          hold_s: float, wallet: int) -> tuple[int, int, int]:  # fmt: skip
    """(locks acquired, refusals, SET calls)."""
    acquired, refused = [0], [0]
    count = threading.Lock()
    start = threading.Barrier(waiters)

    def worker() -> None:
        start.wait()
        for _ in range(rounds):
            try:
                with take(wallet):
                    time.sleep(hold_s)
                    with count:
                        acquired[0] += 1
            except (InProgress, redis.exceptions.LockError):
                with count:
                    refused[0] += 1

    client.config_resetstat()
    threads = [threading.Thread(target=worker) for _ in range(waiters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sets = int(client.info("commandstats").get("cmdstat_set", {}).get("calls", 0))
    return acquired[0], refused[0], sets


@click.command()
@click.option("--redis-url", default=None, help="[default: the dev stack's Redis]")
@click.option("--rounds", default=20, show_default=True)
@click.option("--hold-ms", default=3.0, show_default=True, help="How long a usage holds the lock.")
def main(redis_url: str | None, rounds: int, hold_ms: float) -> None:
    client = redis.Redis.from_url(redis_url or Stack("dev").env()["LEDGER_REDIS_URL"])
    rows = []
    for waiters in (4, 16, 32):
        for name, take in (
            ("redis-py Lock, 2 ms polling, 10 s wait", polling_lock(client, 10_000)),
            ("RedisLocks: backoff 4-50 ms, 16 waiters, 2 s wait", RedisLocks(client, 5000, 2000, 16).wallet),
        ):
            wallet = int(time.time() * 1000)
            acquired, refused, sets = flood(client, take, waiters, rounds, hold_ms / 1000, wallet)
            rows.append(f"| {name} | {waiters} | {acquired} | {refused} | {sets} | {sets / max(acquired, 1):.1f} |")
            click.echo(rows[-1])
    RESULTS.write_text(
        "# SET calls per usage under a flood on one wallet\n\n"
        f"`python -m bench.locks --rounds {rounds} --hold-ms {hold_ms}`: each waiter takes one wallet's lock"
        f" {rounds} times, holding it {hold_ms} ms; SET calls as Redis counts them (INFO commandstats).\n\n"
        "| lock | waiters | locks acquired | 409 | SET calls | SET calls per lock |\n"
        "|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
