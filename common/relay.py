"""The outbox relay: publish pending ledger events and mark them published.

Two ways in, one code path:
- `AfterCommit`: right after a posting commits, the function hands its transaction id
  to a background thread, which publishes in rounds (whatever queued meanwhile goes in
  the same round). Best effort: the request never waits for Pub/Sub, and a failure or a
  lost instance leaves the event pending in the outbox.
- `Relay.sweep()`: publish the oldest pending events, whatever their origin; the
  scheduled sweeper runs it, and it is what makes delivery certain.
Consumers dedupe on the event id: a crash between publishing and marking sends an
event again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.pacing import Pacer, unpaced

log = logging.getLogger("ledger.relay")
SWEEP_ROUND = 500  # events a sweep round reads, publishes and marks (paced, at most this)


class Outbox(Protocol):
    def pending(
        self, transaction_ids: list[int] | None = None, limit: int = 500, min_age_s: float = 0.0
    ) -> list[dict[str, Any]]: ...

    def mark_published(self, transaction_ids: list[int]) -> None: ...

    def mark_failed(self, transaction_id: int, error: str) -> None: ...

    def sweeping(self) -> AbstractContextManager[bool]: ...


class Publisher(Protocol):
    def publish(self, batch: list[dict[str, Any]]) -> tuple[list[int], list[tuple[int, str]]]: ...


@dataclass(frozen=True)
class RelayResult:
    published: int
    failed: int
    another_sweep: bool = False  # a sweep was already running: this one left the backlog to it
    pacing: dict[str, Any] = field(default_factory=dict)  # how the sweep worked and rested (common/pacing.py)


class Relay:
    def __init__(self, outbox: Outbox, publisher: Callable[[], Publisher]) -> None:
        self._outbox = outbox
        self._publisher = publisher  # built on first use: the Pub/Sub client is heavy to import

    def publish(self, transaction_ids: list[int]) -> RelayResult:
        """Publish these transactions' events, if still pending."""
        return self._relay(self._outbox.pending(transaction_ids))

    def sweep(self, limit: int = SWEEP_ROUND, min_age_s: float = 0.0) -> RelayResult:
        """Publish the oldest `limit` pending events written at least `min_age_s` ago
        (younger ones are the after-commit relay's, which is publishing them now)."""
        return self._relay(self._outbox.pending(limit=limit, min_age_s=min_age_s))

    def sweep_all(
        self, min_age_s: float = 0.0, budget_s: float = float("inf"), pacer: Pacer | None = None
    ) -> RelayResult:
        """Sweep round after round until nothing is left, a round fails, or `budget_s`
        has passed (a scheduled sweep stops before the next tick comes), resting after
        each round as `pacer` says. One sweep at a time: a sweep that finds another
        running (a tick while an operator's catch-up runs, say) leaves it the backlog."""
        pacer = pacer or unpaced()
        with self._outbox.sweeping() as alone:
            if not alone:
                log.info("another outbox sweep is running; leaving the backlog to it")
                return RelayResult(0, 0, another_sweep=True)
            started, published, failed = time.monotonic(), 0, 0
            while time.monotonic() - started < budget_s:
                with pacer.batch():  # paced, a round sized to a short batch
                    result = self.sweep(limit=pacer.size(SWEEP_ROUND), min_age_s=min_age_s)
                pacer.counted(result.published + result.failed)
                published += result.published
                failed += result.failed
                if not result.published or result.failed:
                    break
        return RelayResult(published, failed, pacing=pacer.report())

    def _relay(self, batch: list[dict[str, Any]]) -> RelayResult:
        if not batch:
            return RelayResult(0, 0)
        published, failed = self._publisher().publish(batch)
        self._outbox.mark_published(published)
        for transaction_id, error in failed:
            self._outbox.mark_failed(transaction_id, error)
        if failed:
            log.warning("events left pending", extra={"failed": len(failed), "first_error": failed[0][1]})
        return RelayResult(len(published), len(failed))


class AfterCommit:
    """A background thread per instance that relays just-committed transactions."""

    def __init__(self, relay: Relay, batch: int, linger_s: float = 0.0) -> None:
        self._relay = relay
        self._batch = batch
        # Waiting a moment before a round lets the events of concurrent requests share
        # its queries and publishes: fewer round trips per event, for a little more lag.
        self._linger_s = linger_s
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, transaction_id: int) -> None:
        self._queue.put(transaction_id)
        if self._thread is None or not self._thread.is_alive():  # first use, or it died
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            ids = [self._queue.get()]
            if self._linger_s:
                time.sleep(self._linger_s)
            while len(ids) < self._batch:
                try:
                    ids.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._relay.publish(ids)
            except Exception:  # noqa: BLE001 - best effort: the events stay pending for the sweeper
                log.warning("after-commit relay failed; events stay pending", exc_info=True)
