"""Pacing for background jobs: how long a job rests between its small batches.

Every background job (the ERP export, the outbox sweep, lot expiry, dormancy, the hash
chain, the checkpoints, migrations) works in small batches, each its own transaction,
so no lock a live posting needs is held for longer than one batch; the reconciliation
is one snapshot by design, so its batches are its statements. Between two batches the
job rests, so that it is busy at most `duty` of the time: at duty 0.2 a batch that took
50 ms is followed by 200 ms of rest, taken before the next batch (never after the
last) and never longer than `max_pause_s`. Busy time is the batch's wall time, its
statements and the job's own work between them, which bounds its database time per
second from above; the ERP export leaves its delivery out (the ERP's time, not the
database's).

The duty moves between a floor and a cap with what the database shows of the other
logins' sessions (`Load`, read by common/adapters/load_signal.py between batches),
additive increase and multiplicative decrease as in TCP's congestion control:
- busy (a session waits on a lock; more sessions than `busy_sessions` are inside a
  transaction: by Little's law, the live rate times how long each stays in the
  database, so it rises with live latency as well as with the rate; or the reading
  itself took `probe_slowdown` times the run's fastest, as a live request's round trip
  would when the host is short of CPU): the duty halves, down to the floor;
- quiet: it grows by `step`, up to the cap.
The floor bounds a backlog's time to clear: under any load a job still runs at about
floor x its unpaced speed. Where a deadline matters more than that (the ERP export: a
1,000,000-event backlog within 15 minutes), `min_rate` bounds it directly: a run that
has counted its items rests only as long as it stays ahead of `min_rate` items a second
since its first batch, whatever the duty says. `fixed` keeps the cap whatever the load;
`off` never rests (an operator's run on a quiet database).

No I/O here: the signal, the clock and the sleep are injected, so the unit tests give
it loads and check what it does (tests/unit/test_pacing.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

MODES = ("adaptive", "fixed", "off")


@dataclass(frozen=True)
class Load:
    """What the database shows of everyone else, at one moment."""

    in_transaction: int  # other sessions inside a transaction (running or waiting)
    lock_waits: int  # sessions waiting for a lock another holds
    # how long the reading itself took, as a request's round trip to the database would:
    # it grows when the database's host (or the job's) is short of CPU, which neither
    # count shows
    probe_s: float = 0.0


@dataclass(frozen=True)
class PacingSettings:
    mode: str = "adaptive"
    cap: float = 0.25  # the most of each second a job may be busy
    floor: float = 0.05  # the least: what bounds a backlog's time to clear
    step: float = 0.02  # what a quiet reading adds to the duty
    busy_sessions: int = 4  # more sessions than this inside a transaction is busy
    probe_every_s: float = 0.2  # the signal is read at most this often
    max_pause_s: float = 5.0  # the longest one rest: well inside the database's 120 s idle-in-transaction limit
    # A batch is sized to take about this long at the pace of the last ones: a live
    # request that meets one waits for a short batch, however slow the job's items are
    batch_target_s: float = 0.025
    # a reading slower than this many times the fastest of the run (and than
    # probe_floor_s) is busy: the round trip a live request makes has slowed down
    probe_slowdown: float = 3.0
    probe_floor_s: float = 0.002
    # items a second the run keeps whatever the load (0: no such bound); it rests only
    # while ahead of that schedule. Needs the job to count its items (`counted`).
    min_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"pacing mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 0 < self.floor <= self.cap <= 1:
            raise ValueError(f"pacing needs 0 < floor ({self.floor}) <= cap ({self.cap}) <= 1")
        if self.max_pause_s <= 0:
            raise ValueError(f"pacing needs a positive longest rest, not {self.max_pause_s}")
        if self.min_rate < 0:
            raise ValueError(f"pacing needs a minimum rate of 0 or more items a second, not {self.min_rate}")


class Pacer:
    """One run of a job: `with pacer.batch(): ...` around each batch. The rest a batch
    earned is taken when the next batch starts, so a run never rests after its last
    batch, and a rest never exceeds `max_pause_s` (a reconciliation rests inside its
    one snapshot, which the database ends when idle for 120 s)."""

    def __init__(
        self,
        settings: PacingSettings = PacingSettings(),
        signal: Callable[[], Load | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._signal = signal
        self._clock = clock
        self._sleep = sleep
        # start between floor and cap: a job starting under load halves from there at once
        self.duty = settings.cap if settings.mode == "fixed" else (settings.floor + settings.cap) / 2
        self._read_at = -float("inf")
        self.owed_s = 0.0  # the rest the last batch earned, taken before the next
        self.batches = 0
        self.worked_s = 0.0
        self.rested_s = 0.0
        self.busy_readings = 0
        self.readings = 0
        self.unread = 0  # readings that failed (each counted as the worst load)
        self.lowest_duty = self.duty
        self.fastest_probe_s = float("inf")  # the quickest reading of the run: the database unloaded
        self._item_s: float | None = None  # seconds an item took, smoothed over the batches
        self._last_batch_s = 0.0
        self.items = 0
        self._first_batch_at: float | None = None  # where the min_rate schedule starts
        self.rest_cut_s = 0.0  # rest left out to keep min_rate

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Rest for the previous batch, then time the block as this one."""
        self.rest_owed()
        started = self._clock()
        if self._first_batch_at is None:
            self._first_batch_at = started
        try:
            yield
        finally:
            self.worked(self._clock() - started)

    def size(self, most: int) -> int:
        """How many items the next batch should take, at most `most` (the job's own
        bound): as many as fit `batch_target_s` at the pace of the batches so far, a
        tenth of `most` before any was timed. Unpaced, always `most`."""
        if self.settings.mode == "off":
            return most
        if self._item_s is None:
            return max(1, min(most, max(most // 10, 1)))
        return max(1, min(most, int(self.settings.batch_target_s / max(self._item_s, 1e-6))))

    def counted(self, items: int) -> None:
        """The batch just ended handled `items`: its time per item tunes the next size."""
        self.items += items
        if items <= 0:
            return
        per_item = self._last_batch_s / items
        self._item_s = per_item if self._item_s is None else 0.5 * self._item_s + 0.5 * per_item

    def rest_owed(self) -> float:
        """Take the rest the last batch earned (none after the run's last batch, which
        never calls this again), cut to what keeps `min_rate`; how long it was."""
        pause, self.owed_s = self.owed_s, 0.0
        if pause > 0 and self.settings.min_rate > 0 and self._first_batch_at is not None:
            ahead_s = self.items / self.settings.min_rate - (self._clock() - self._first_batch_at)
            allowed = max(0.0, ahead_s)
            if allowed < pause:
                self.rest_cut_s += pause - allowed
                pause = allowed
        if pause > 0:
            self._sleep(pause)
            self.rested_s += pause
        return pause

    def worked(self, worked_s: float) -> float:
        """A batch took `worked_s`: adapt the duty and owe the rest that keeps the job
        busy at most `duty` of the time; how long that rest is."""
        worked_s = max(worked_s, 0.0)
        self._last_batch_s = worked_s
        self.batches += 1
        self.worked_s += worked_s
        if self.settings.mode == "off":
            return 0.0
        if self.settings.mode == "adaptive":
            self._adapt()
        self.owed_s = min(worked_s * (1 - self.duty) / self.duty, self.settings.max_pause_s)
        return self.owed_s

    def busy(self, load: Load) -> bool:
        if load.probe_s > 0:
            self.fastest_probe_s = min(self.fastest_probe_s, load.probe_s)
        slowed = load.probe_s > max(self.settings.probe_slowdown * self.fastest_probe_s, self.settings.probe_floor_s)
        return load.lock_waits > 0 or load.in_transaction > self.settings.busy_sessions or slowed

    def _adapt(self) -> None:
        now = self._clock()
        if self._signal is None or now - self._read_at < self.settings.probe_every_s:
            return
        self._read_at = now
        try:
            load = self._signal()
        except Exception:  # noqa: BLE001 - a reading that failed must not fail the job's committed batch
            load = None
        self.readings += 1
        if load is None:  # the signal could not be read: assume the worst
            self.unread += 1
            self.duty = self.settings.floor
        elif self.busy(load):
            self.busy_readings += 1
            self.duty = max(self.settings.floor, self.duty / 2)
        else:
            self.duty = min(self.settings.cap, self.duty + self.settings.step)
        self.lowest_duty = min(self.lowest_duty, self.duty)

    def report(self) -> dict[str, Any]:
        """For a job's log line: how much it worked and rested, and how the load moved it."""
        return {
            "mode": self.settings.mode,
            "batches": self.batches,
            "worked_s": round(self.worked_s, 3),
            "rested_s": round(self.rested_s, 3),
            "duty": round(self.duty, 3),
            "lowest_duty": round(self.lowest_duty, 3),
            "busy_readings": self.busy_readings,
            "readings": self.readings,
            "unread": self.unread,
            "items": self.items,
            **(
                {"min_rate": self.settings.min_rate, "rest_cut_s": round(self.rest_cut_s, 3)}
                if self.settings.min_rate
                else {}
            ),
        }


def unpaced() -> Pacer:
    """A pacer that never rests: for callers that pace nothing (unit tests, one-off tools)."""
    return Pacer(PacingSettings(mode="off"))
