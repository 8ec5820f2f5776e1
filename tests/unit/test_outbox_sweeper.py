"""The outbox sweeper's tick (functions/outbox_sweeper/main.py) with its stores faked:
the hash chain keeps up with the ledger's rate, not a fixed number of rows a tick."""

import importlib.util
import logging
from datetime import UTC, datetime
from pathlib import Path

from cloudevents.http import CloudEvent

from common.balance_checkpoints import ADVANCE_BATCH
from common.hash_chain import EXTEND_BATCH, Head, Lag
from common.pacing import unpaced
from common.relay import RelayResult

MAIN = Path(__file__).resolve().parents[2] / "functions" / "outbox_sweeper" / "main.py"


def load_sweeper():
    spec = importlib.util.spec_from_file_location("outbox_sweeper_main", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Relay:
    def sweep_all(self, min_age_s, budget_s, pacer=None):
        return RelayResult(0, 0)


class Outbox:
    def backlog(self, stuck_after_s):
        return {"pending": 0, "stuck": 0}


class Chain:
    """A backlog of full batches, then caught up; the lag it reports after."""

    def __init__(self, batches, lag):
        self.left, self._lag, self.linked = batches, lag, 0

    def extend(self, limit):
        count = limit if self.left > 0 else 0
        self.left -= 1
        self.linked += count
        return count, False, Head(self.linked, self.linked, "00" * 32)

    def lag(self):
        return self._lag


class Checkpoints:
    """Full steps of a backlog, then caught up."""

    def __init__(self, steps=0):
        self.left, self.taken = steps, 0

    def advance(self, max_rows):
        count = max_rows if self.left > 0 else 0
        self.left -= 1
        self.taken += count
        return count

    def horizon(self):
        return {"created_xact": 1, "transaction_id": self.taken, "accounts": 7}

    def reconciled_age_s(self):
        return 93_600.5


def tick(monkeypatch, chain, checkpoints=None):
    sweeper = load_sweeper()
    monkeypatch.setattr(sweeper.bootstrap, "relay", Relay)
    monkeypatch.setattr(sweeper.bootstrap, "outbox", Outbox)
    monkeypatch.setattr(sweeper.bootstrap, "chain_store", lambda: chain)
    monkeypatch.setattr(sweeper.bootstrap, "checkpoint_store", lambda: checkpoints or Checkpoints())
    monkeypatch.setattr(sweeper.bootstrap, "pacer", unpaced)  # the pacer reads the database's load
    sweeper.outbox_sweeper(
        CloudEvent(
            {"type": "google.cloud.pubsub.topic.v1.messagePublished", "id": "1", "time": datetime.now(UTC).isoformat(),
             "source": "//pubsub.googleapis.com/projects/p/topics/outbox-sweep-tick"},
            {"message": {}},
        )
    )  # fmt: skip


def test_one_tick_links_a_backlog_of_many_batches(monkeypatch):
    chain = Chain(batches=60, lag=Lag(None, 0.0, False))
    tick(monkeypatch, chain)
    assert chain.linked == 60 * EXTEND_BATCH and chain.left < 0


def test_a_chain_held_back_for_long_is_logged_as_an_error(monkeypatch, caplog):
    chain = Chain(batches=0, lag=Lag(7, 3600.0, True))
    with caplog.at_level(logging.INFO, logger="ledger.outbox_sweeper"):
        tick(monkeypatch, chain)
    [record] = [r for r in caplog.records if r.getMessage() == "hash chain extended"]
    assert record.levelno == logging.ERROR
    assert record.chain["held_back"] and record.chain["lag_s"] == 3600.0


def test_one_tick_advances_the_balance_checkpoints_until_caught_up(monkeypatch):
    checkpoints = Checkpoints(steps=3)
    tick(monkeypatch, Chain(batches=0, lag=Lag(None, 0.0, False)), checkpoints)
    assert checkpoints.taken == 3 * ADVANCE_BATCH and checkpoints.left < 0


def test_each_tick_logs_how_long_ago_the_ledger_last_reconciled_clean(monkeypatch, caplog):
    """The daily reconciliation can't report its own absence: the minute's tick does."""
    with caplog.at_level(logging.INFO, logger="ledger.outbox_sweeper"):
        tick(monkeypatch, Chain(batches=0, lag=Lag(None, 0.0, False)))
    [record] = [r for r in caplog.records if r.getMessage() == "ledger last reconciled"]
    assert record.event == "ledger_reconciled" and record.reconciled_age_s == 93_600.5
