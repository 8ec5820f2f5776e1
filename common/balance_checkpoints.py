"""Advancing the system accounts' balance checkpoints (docs/ledger-model.md#system-account-balances).

A system account's balance is its checkpoint, the sum of its entries at or below the
horizon of finished transactions, plus its entries after it. The checkpoints advance in
small steps, each its own database transaction (`ledger.advance_balance_checkpoints`),
so the lock on the horizon is never held for long; the outbox sweeper's tick and
`python -m common.ops checkpoints` run steps until caught up or out of time. The reads
are exact whatever the checkpoints' lag; a short lag keeps them cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from common.pacing import Pacer, unpaced

ADVANCE_BATCH = 5000  # transactions per step


class CheckpointStore(Protocol):
    def advance(self, max_rows: int) -> int: ...

    def horizon(self) -> dict[str, Any]: ...


def advance(
    store: CheckpointStore,
    batch: int = ADVANCE_BATCH,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    pacer: Pacer | None = None,
) -> dict[str, Any]:
    """Step until a step takes less than a full batch (caught up with the horizon) or
    `budget_s` ran out; at least one step either way, each rested for as `pacer` says."""
    deadline = None if budget_s is None else clock() + budget_s
    pacer = pacer or unpaced()
    taken = 0
    while True:
        size = pacer.size(batch)  # paced, sized to a short step
        with pacer.batch():
            count = store.advance(size)
        pacer.counted(count)
        taken += count
        if count < size or (deadline is not None and clock() >= deadline):
            break
    return {"transactions": taken, "caught_up": count < size, "horizon": store.horizon()}
