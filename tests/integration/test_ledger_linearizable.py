"""Concurrent postings against the model: several threads send random money actions
through the service in-process over a few shared wallets (each thread its own keys,
some keys sent by two threads at once, replays of a thread's own keys, voids of its
own postings), and afterwards the ledger must be explainable by a sequential order:

- conservation (entries sum to zero per asset) and every wallet within its limit and
  every spend counter within its limit;
- every key answered with a posting has exactly one transaction, the same one for
  every copy; a key refused (or never decided) has none;
- replaying the acknowledged postings one at a time through the model
  (tests/ledger_model.py), in the order they took their wallets, refuses none of them
  and ends with the database's balances, lots and spend counters: a linearizable
  order exists.

The order is the order of each transaction's first entry id, not its transaction id:
an id is drawn when the posting starts, before it waits for its wallets' locks, while
its entries are written once it holds them all, and the locks are held to commit; so
two postings that share a wallet have their entries in the order they committed.

Seeded (random.Random(seed)): `make test` runs LEDGER_MODEL_ROUNDS (3) seeds, `make
model` more. The threads' interleaving differs from run to run; the checks hold for any.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pg8000.native
import pytest

from common import bootstrap
from common.ledger import commands
from tests import ledger_snapshot
from tests.ledger_model import OK, Ledger, Refusal, period_start
from tests.ledger_requests import ASSET, Answer, Request, now, on_model, send
from tests.support import CALLER

ROUNDS = int(os.environ.get("LEDGER_MODEL_ROUNDS", "3"))
THREADS = 5
STEPS = 40  # per thread
SHARED = 6  # keys sent by two threads at once
WALLETS = ("A", "B", "C")  # A has a daily spend limit, C a credit limit
DAY_LIMIT = 600
# answers that decide nothing: the key was released, and a copy or a replay may still post
UNDECIDED = {"request_in_progress", "wallet_locked"}
REFUSALS = {"insufficient_funds", "spend_limit_exceeded", "credit_already_spent", "already_voided"}


def plan(rng: random.Random, start: datetime) -> list[Request | str | int]:
    """One thread's steps: requests; "void": a void of its latest posting; a number n:
    a replay of its n-th earlier key (modulo how many it has), with its own request."""
    steps: list[Request | str | int] = []
    for _ in range(STEPS):
        roll = rng.random()
        wallet, other = rng.sample(WALLETS, 2)
        if roll < 0.25:
            expiry = rng.choice([None, None, 24, 48])
            expires_at = None if expiry is None else start + timedelta(hours=expiry)
            steps.append(Request("topup", wallet, amount=rng.randint(1, 80), expires_at=expires_at, ref=_unique()))
        elif roll < 0.55:
            steps.append(Request("usage", wallet, amount=rng.randint(1, 60), ref=_unique()))
        elif roll < 0.8:
            steps.append(Request("transfer", wallet, other, amount=rng.randint(1, 60)))
        elif roll < 0.9:
            steps.append("void")
        else:
            steps.append(rng.randrange(STEPS))
    return steps


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_concurrent_postings_are_explained_by_a_sequential_order(stack, seed):
    service = bootstrap.service()
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0)
    if now() + timedelta(minutes=2) > period_start("day", now()) + timedelta(days=1):
        pytest.skip("too close to a UTC midnight: the day's spend counter would change under the run")
    model, ids = Ledger(), {}
    owner = f"linear-{uuid.uuid4().hex[:12]}"
    for name, credit in (("A", 0), ("B", 0), ("C", 50)):
        cmd = commands.CreateWallet(owner_id=f"{owner}-{name}", asset=ASSET, credit_limit=credit)
        ids[name] = service.create_wallet(CALLER, cmd)["id"]
        model.add_wallet(name, credit_limit=credit)
    service.update_wallet(CALLER, ids["A"], commands.UpdateWallet(spend_limits={"day": DAY_LIMIT}))
    model.update("A", spend_limits={"day": DAY_LIMIT})

    requests: dict[str, Request] = {}  # by key
    answers: dict[str, list[Answer]] = defaultdict(list)
    for name in WALLETS:  # sequential funding, through the model as it goes
        request, key = Request("topup", name, amount=200, ref=_unique()), _unique()
        decided = model.decide(key, request, on_model(model, request, now()))
        answer = send(service, ids, request, key)
        assert answer.code == decided.code == OK
        model.posted(key, answer.transaction_id, decided.posting)
        requests[key] = request

    plans = [[(_unique(), step) for step in plan(rng, start)] for _ in range(THREADS)]
    for _ in range(SHARED):  # the same key and request from two threads, at about the same step
        first, second = rng.sample(range(THREADS), 2)
        at = rng.randrange(STEPS)
        candidates = [entry for entry in plans[first][at:] if isinstance(entry[1], Request)]
        if candidates:
            plans[second].insert(min(at, len(plans[second])), candidates[0])
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def run(steps: list[tuple[str, Request | str | int]]) -> None:
        mine: list[tuple[str, Request, Answer]] = []
        barrier.wait()
        for key, step in steps:
            if step == "void":
                posted = [a.transaction_id for _, r, a in mine if a.code == OK and r.action != "void"]
                if not posted:
                    continue
                step = Request("void", transaction_id=posted[-1])
            elif isinstance(step, int):
                if not mine:
                    continue
                key, step, _ = mine[step % len(mine)]
            answer = send(service, ids, step, key)
            mine.append((key, step, answer))
            with lock:
                requests[key] = step
                answers[key].append(answer)

    failures: list[BaseException] = []

    def run_or_record(steps: list[tuple[str, Request | str | int]]) -> None:
        try:
            run(steps)
        except BaseException as error:  # noqa: BLE001 - a thread's error would otherwise be a warning only
            failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run_or_record, args=(steps,)) for steps in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        acknowledged = _check_answers(con, answers)
        _check_conservation_and_limits(con, ids)
        order = con.run(
            "SELECT e.transaction_id FROM ledger.entries e WHERE e.transaction_id = ANY (CAST(:ids AS bigint[]))"
            " GROUP BY e.transaction_id ORDER BY min(e.id)",
            ids=list(acknowledged),
        )
        assert len(order) == len(acknowledged)
        at = now()
        for (transaction_id,) in order:
            request = requests[acknowledged[transaction_id]]
            try:
                model.postings[transaction_id] = model.attempt(on_model(model, request, at))
            except Refusal as refusal:
                raise AssertionError(f"no sequential order explains posting {transaction_id}: {request}") from refusal
        found, _ = ledger_snapshot.from_database(con, ids)
        assert found == ledger_snapshot.from_model(model)
    finally:
        con.close()


def _check_answers(con, answers: dict[str, list[Answer]]) -> dict[int, str]:
    """Each key's copies agree and its postings match its answer; the acknowledged
    postings, {transaction id: key}."""
    acknowledged: dict[int, str] = {}
    for key, got in answers.items():
        decided = {(a.code, a.transaction_id) for a in got if a.code not in UNDECIDED}
        assert {a.code for a in got} <= {OK} | REFUSALS | UNDECIDED, (key, got)
        assert len(decided) <= 1, (key, got)  # every copy and replay answers alike
        postings = con.run(
            "SELECT id FROM ledger.transactions WHERE tenant = :t AND idempotency_key = :k", t="tests", k=key
        )
        if decided and next(iter(decided))[0] == OK:
            assert postings == [[next(iter(decided))[1]]], (key, got)
            acknowledged[postings[0][0]] = key
        else:
            # refused, or every copy told to come back (another held the key, or the
            # wallet's lock was not had in time): either way, nothing posted
            assert postings == [], (key, got)
    return acknowledged


def _check_conservation_and_limits(con, ids: dict[str, int]) -> None:
    assert con.run("SELECT asset_code FROM ledger.entries GROUP BY asset_code HAVING sum(amount) <> 0") == []
    assert not con.run(
        "SELECT id FROM ledger.wallets WHERE id = ANY (CAST(:ids AS bigint[]))"
        " AND (balance - lot_balance < -credit_limit OR lot_balance < 0)",
        ids=list(ids.values()),
    )
    assert not con.run(
        "SELECT c.wallet_id FROM ledger.spend_counters c JOIN ledger.spend_limits l USING (wallet_id, period)"
        " WHERE c.wallet_id = ANY (CAST(:ids AS bigint[])) AND c.spent > l.amount",
        ids=list(ids.values()),
    )


def _unique() -> str:
    return f"lin-{uuid.uuid4()}"
