"""Group commit: requests that arrive while the database is busy go together.

A function instance serves several requests at once on threads. Each posting is one
round trip and one database commit; under load, most of what a posting costs is that
round trip and commit, not its own rows. So a posting that arrives while `max_in_flight`
batches are already at the database waits, and the next thread to find a free slot
takes everything that waited (up to `max_batch`) in one call. Nothing waits on a timer:
an instance with no load posts each request alone, at once, exactly as before.

This module only coordinates threads; what "one" and "many" mean is the caller's
(`run_one(item)`, and `run_many(items)` giving one outcome per item, in order: a value
or an exception to raise in that item's thread).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Value = TypeVar("Value")


class _Alone:
    """What a batch that failed as a whole hands each member instead of an outcome: the
    member posts alone, in its own thread, so a slow or stuck batch never makes one
    thread post all of its members one after another while the slot stays taken."""

    __slots__ = ("batch_error",)

    def __init__(self, batch_error: BaseException) -> None:
        self.batch_error = batch_error


class _Slot(Generic[Item, Value]):
    __slots__ = ("item", "taken", "done", "value", "error")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.taken = False
        self.done = False
        self.value: Value | _Alone | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Value]):
    def __init__(
        self,
        run_one: Callable[[Item], Value],
        run_many: Callable[[Sequence[Item]], Sequence[Value | BaseException]],
        max_batch: int,
        max_in_flight: int,
        run_after_failed_batch: Callable[[Item, BaseException], Value] | None = None,
    ) -> None:
        """`run_after_failed_batch(item, batch_error)` runs an item alone after its batch
        failed as a whole (default: `run_one(item)`)."""
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._run_one = run_one
        self._run_many = run_many
        self._run_after_failed_batch = run_after_failed_batch or (lambda item, _error: run_one(item))
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._changed = threading.Condition()
        self._waiting: deque[_Slot[Item, Value]] = deque()
        self._in_flight = 0
        # for the benchmark's report: calls to run_many and the items they carried, and
        # items that went alone
        self.batches = 0
        self.batched_items = 0
        self.alone = 0

    def submit(self, item: Item) -> Value:
        slot: _Slot[Item, Value] = _Slot(item)
        with self._changed:
            self._waiting.append(slot)
            while not slot.done:
                if slot.taken or self._in_flight >= self._max_in_flight:
                    self._changed.wait()
                    continue
                # A free slot and this item still waits: lead the next batch. The
                # batch is taken in arrival order, so this item may not be in it when
                # more than max_batch wait ahead; then it leads again afterwards.
                batch = [self._waiting.popleft() for _ in range(min(self._max_batch, len(self._waiting)))]
                for member in batch:
                    member.taken = True
                self._in_flight += 1
                self._changed.release()
                try:
                    self._execute(batch)
                except BaseException as error:  # noqa: BLE001 - e.g. interrupted: no member may wait forever
                    for member in batch:
                        if not member.done:
                            self._settle(member, error)
                finally:
                    self._changed.acquire()
                    self._in_flight -= 1
                    self._changed.notify_all()
        if slot.error is not None:
            raise slot.error
        if isinstance(slot.value, _Alone):
            return self._run_after_failed_batch(item, slot.value.batch_error)
        return slot.value  # type: ignore[return-value]

    def _execute(self, batch: list[_Slot[Item, Value]]) -> None:
        if len(batch) == 1:
            self.alone += 1
            self._settle(batch[0], self._outcome_alone(batch[0].item))
            return
        try:
            outcomes: Sequence[Value | _Alone | BaseException] = self._run_many([slot.item for slot in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"run_many gave {len(outcomes)} outcomes for {len(batch)} items")
        except Exception as error:  # noqa: BLE001 - the batch as a whole failed: each item goes alone
            # Safe to repeat: run_one of an item that did commit in the failed batch
            # finds it (postings replay by idempotency key) instead of posting it again.
            outcomes = [_Alone(error)] * len(batch)
        else:
            self.batches += 1
            self.batched_items += len(batch)
        for slot, outcome in zip(batch, outcomes, strict=True):
            self._settle(slot, outcome)

    def _outcome_alone(self, item: Item) -> Value | BaseException:
        try:
            return self._run_one(item)
        except Exception as error:  # noqa: BLE001 - handed to the item's own thread
            return error

    @staticmethod
    def _settle(slot: _Slot[Item, Value], outcome: Value | _Alone | BaseException) -> None:
        if isinstance(outcome, BaseException):
            slot.error = outcome
        else:
            slot.value = outcome
        slot.done = True
