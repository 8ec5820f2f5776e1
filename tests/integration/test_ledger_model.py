"""The ledger against a model of its rules: Hypothesis drives random sequences of money
actions and wallet changes through the service in-process (real Postgres, Redis and
the Firestore emulator), runs each on the in-memory model too (tests/ledger_model.py),
and after every step compares the answer's code and every balance, lot, limit and
spend counter of the example's wallets (tests/ledger_snapshot.py).

Each example opens wallets of its own: two personal ones (P0, P1) and an enterprise
tree (root R, members C1 and C2, G below C1). The rules: top-ups and bonuses, with or
without a lot (or an expiry in the past), usages, transfers (within and across trees),
allocations and reclaims (also of a root: not_a_child), voids of earlier postings,
replays of old keys and reuses of them with another body, freezes, closes and
reopenings, credit limits, spend limits, a lot's expiry moved into the past (as time
would) and the expiry job.

`make test` runs LEDGER_MODEL_EXAMPLES (default 50) derandomized examples: the same
sequences every run, so a red CI build is the code's doing, not the draw's. `make model`
runs 1000 random ones (LEDGER_MODEL_DERANDOMIZE=0), a new draw each time.

Keeping a failure: Hypothesis prints the shrunk sequence as Python (`state =
LedgerMachine()`, then a `state.<rule>(...)` line per step, each followed by
`state.matches_the_model()`), with a `@reproduce_failure` blob. Copy the lines into a
test at the end of this module, named after what went wrong; drop the blob. Written by
hand, a sequence starts with `state = checked()` instead, which compares after every
step by itself. If the ledger was wrong, the test stays red until it is fixed; if the
model was, fix the model and keep the test. Shrinking against the database is slow
(minutes): Hypothesis stops it after five.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pg8000.native
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from common import bootstrap
from common.errors import LedgerError
from common.ledger import commands
from tests import ledger_snapshot
from tests.ledger_model import OK, Ledger, Refusal
from tests.ledger_requests import ASSET, Request, now, on_model, send
from tests.support import CALLER

EXAMPLES = int(os.environ.get("LEDGER_MODEL_EXAMPLES", "50"))
DERANDOMIZE = os.environ.get("LEDGER_MODEL_DERANDOMIZE", "1") == "1"
MODEL_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None if DERANDOMIZE else settings.default.database,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

WALLETS = ("P0", "P1", "R", "C1", "C2", "G")
WALLET = st.sampled_from(WALLETS)
MEMBER = st.sampled_from(["C1", "C2", "G", "C1", "C2", "G", "R"])  # R: a root has no parent
AMOUNT = st.integers(1, 60)
# a lot's expiry in hours from the example's start; None: no lot; -1: in the past
EXPIRY = st.sampled_from([None, None, 24, 48, 72, -1])
PICK = st.integers(0, 30)  # which earlier key, posting or lot (modulo how many there are)
LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)


class LedgerMachine(RuleBasedStateMachine):
    service: Any = None  # bound by the module's fixture: the service and an owner connection
    con: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.model = Ledger()
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.requests: dict[str, Request] = {}
        self.lot_ids: list[int] = []  # the database's id of each model lot, in order
        self.start = datetime.now(UTC).replace(microsecond=0)

    # Wallets -----------------------------------------------------------------------

    @initialize(p0_credit=st.sampled_from([0, 40]), root_credit=st.sampled_from([0, 40]))
    def open_wallets(self, p0_credit: int, root_credit: int) -> None:
        owner = f"model-{uuid.uuid4().hex[:12]}"
        for name, parent, credit in (
            ("P0", None, p0_credit),
            ("P1", None, 0),
            ("R", None, root_credit),
            ("C1", "R", 0),
            ("C2", "R", 0),
            ("G", "C1", 0),
        ):
            tree = name not in ("P0", "P1")
            cmd = commands.CreateWallet(
                owner_id=f"{owner}-{name}",
                asset=ASSET,
                model="enterprise" if tree else "personal",
                parent_id=self.ids[parent] if parent else None,
                credit_limit=credit,
            )
            self.ids[name] = self.service.create_wallet(CALLER, cmd)["id"]
            self.model.add_wallet(name, parent, tree, credit)
        # some money to start from, posted and checked like any step
        for name in ("P0", "P1", "R"):
            self._post(Request("topup", name, amount=150, ref=_unique("pay")))
        for member, amount in (("C1", 60), ("C2", 40), ("G", 30)):
            self._post(Request("allocate", member, amount=amount))

    # Money actions -------------------------------------------------------------------

    @rule(wallet=WALLET, amount=st.integers(1, 100), expiry=EXPIRY)
    def top_up(self, wallet: str, amount: int, expiry: int | None) -> None:
        self._post(Request("topup", wallet, amount=amount, expires_at=self._expiry(expiry), ref=_unique("pay")))

    @rule(wallet=WALLET, amount=AMOUNT, expiry=EXPIRY)
    def bonus(self, wallet: str, amount: int, expiry: int | None) -> None:
        self._post(Request("bonus", wallet, amount=amount, expires_at=self._expiry(expiry)))

    @rule(wallet=WALLET, amount=AMOUNT)
    def usage(self, wallet: str, amount: int) -> None:
        self._post(Request("usage", wallet, amount=amount, ref=_unique("use")))

    @rule(source=WALLET, to=WALLET, amount=AMOUNT)
    def transfer(self, source: str, to: str, amount: int) -> None:
        self._post(Request("transfer", source, to, amount=amount))

    @rule(member=MEMBER, amount=AMOUNT)
    def allocate(self, member: str, amount: int) -> None:
        self._post(Request("allocate", member, amount=amount))

    @rule(member=MEMBER, amount=AMOUNT)
    def reclaim(self, member: str, amount: int) -> None:
        self._post(Request("reclaim", member, amount=amount))

    @precondition(lambda self: self.model.postings)
    @rule(pick=PICK)
    def void(self, pick: int) -> None:
        posted = sorted(self.model.postings)
        self._post(Request("void", transaction_id=posted[pick % len(posted)]))

    @precondition(lambda self: self.keys)
    @rule(pick=PICK)
    def replay(self, pick: int) -> None:
        """An old key with its own request: its first outcome again, nothing posted."""
        key = self.keys[pick % len(self.keys)]
        self._post(self.requests[key], key)

    @precondition(lambda self: self.keys)
    @rule(pick=PICK)
    def reuse_key(self, pick: int) -> None:
        """An old key with another request: idempotency_key_reused, nothing posted."""
        key = self.keys[pick % len(self.keys)]
        first = self.requests[key]
        self._post(replace(first, note=first.note + "!"), key)

    # Wallet changes ------------------------------------------------------------------

    @rule(wallet=WALLET, status=st.sampled_from(["active", "frozen", "frozen", "closed"]))
    def set_status(self, wallet: str, status: str) -> None:
        self._update(wallet, status=status)

    @rule(wallet=WALLET)
    def empty_and_close(self, wallet: str) -> None:
        """Spend what the model says the wallet holds, then close it: a close wants the
        wallet empty, which random amounts seldom leave it."""
        if (balance := self.model.balance(wallet)) > 0:
            self._post(Request("usage", wallet, amount=balance, ref=_unique("use")))
        self._update(wallet, status="closed")

    @rule(wallet=WALLET, limit=st.sampled_from([0, 25, 100]))
    def set_credit_limit(self, wallet: str, limit: int) -> None:
        self._update(wallet, credit_limit=limit)

    @rule(wallet=WALLET, period=st.sampled_from(["day", "week", "month"]), amount=st.sampled_from([None, 5, 30, 80]))
    def set_spend_limit(self, wallet: str, period: str, amount: int | None) -> None:
        self._update(wallet, spend_limits={period: amount})

    # Time ----------------------------------------------------------------------------

    @precondition(lambda self: any(lot.expires_at > LONG_AGO + timedelta(days=1) for lot in self.model.lots.values()))
    @rule(pick=PICK)
    def lot_expires(self, pick: int) -> None:
        """A lot reaches its expiry, as time passing would: the owner moves it into the
        past (the functions' role can't), each to its own instant."""
        due = [lot for lot in self.model.lots.values() if lot.expires_at > LONG_AGO + timedelta(days=1)]
        lot = due[pick % len(due)]
        when = LONG_AGO + timedelta(seconds=len(self.model.lots) * 100 + lot.seq)
        self.con.run("UPDATE ledger.lots SET expires_at = :t WHERE id = :id", t=when, id=self.lot_ids[lot.seq])
        self.model.backdate(lot.seq, when)

    @rule()
    def expiry_job(self) -> None:
        result = self.service.expire_lots()
        assert result["failed"] == 0
        self.model.expire(now())

    # After every step ------------------------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        if not self.ids:
            return
        found, self.lot_ids = ledger_snapshot.from_database(self.con, self.ids)
        assert found == ledger_snapshot.from_model(self.model)

    # ---------------------------------------------------------------------------------

    def _expiry(self, hours: int | None) -> datetime | None:
        return None if hours is None else self.start + timedelta(hours=hours)

    def _post(self, request: Request, key: str | None = None) -> None:
        key = key or _unique("model")
        at = now()
        expected = self.model.decide(key, request, on_model(self.model, request, at))
        answer = send(self.service, self.ids, request, key)
        assert (answer.code, answer.replayed) == (expected.code, expected.replayed), request
        if expected.replayed and expected.code == OK:
            assert answer.transaction_id == expected.transaction_id
        if expected.posting is not None:
            self.model.posted(key, answer.transaction_id, expected.posting)
        if key not in self.requests:
            self.keys.append(key)
            self.requests[key] = request

    def _update(self, wallet: str, **change: Any) -> None:
        try:
            self.model.attempt(lambda: self.model.update(wallet, **change))
            expected = OK
        except Refusal as refusal:
            expected = refusal.code
        try:
            self.service.update_wallet(CALLER, self.ids[wallet], commands.UpdateWallet(**change))
            got = OK
        except LedgerError as error:
            got = error.code
        assert got == expected, (wallet, change)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


@pytest.fixture(autouse=True)
def bound_machine(stack):
    con = pg8000.native.Connection(**stack.owner_dsn())
    LedgerMachine.service, LedgerMachine.con = bootstrap.service(), con
    yield
    LedgerMachine.service = LedgerMachine.con = None
    con.close()


@pytest.mark.timeout(900)  # shrinking a failure against the database takes minutes; Hypothesis stops it at 5
def test_the_ledger_follows_its_model():
    run_state_machine_as_test(LedgerMachine, settings=MODEL_SETTINGS)


class _Checked:
    """A machine whose every step is followed by the comparison with the database."""

    def __init__(self) -> None:
        self._machine = LedgerMachine()

    def __getattr__(self, name: str) -> Any:
        step = getattr(self._machine, name)

        def checked_step(**kwargs: Any) -> Any:
            result = step(**kwargs)
            self._machine.matches_the_model()
            return result

        return checked_step


def checked() -> Any:
    return _Checked()


# Regressions: shrunk sequences kept as explicit steps (see the module's docstring). ---


def test_a_void_takes_back_an_expired_lot_it_made_before_the_job_runs():
    state = checked()
    state.open_wallets(p0_credit=0, root_credit=0)
    state.top_up(wallet="P0", amount=50, expiry=24)
    state.lot_expires(pick=0)
    state.void(pick=0)  # the lot has expired but holds its credit: the void takes it
    state.expiry_job()


def test_a_usage_void_refills_a_lot_the_job_emptied_and_it_expires_again():
    state = checked()
    state.open_wallets(p0_credit=0, root_credit=0)
    state.top_up(wallet="P1", amount=50, expiry=48)
    state.usage(wallet="P1", amount=30)
    state.lot_expires(pick=0)
    state.expiry_job()
    state.void(pick=1)  # the usage: 30 back into the expired lot
    state.expiry_job()
    state.void(pick=0)  # the top-up: its lot expired into breakage


def test_an_allocation_carries_expiry_down_and_its_void_brings_it_back():
    state = checked()
    state.open_wallets(p0_credit=0, root_credit=40)
    state.top_up(wallet="R", amount=30, expiry=72)
    state.bonus(wallet="R", amount=20, expiry=24)
    state.allocate(member="C1", amount=60)  # 20 + 30 from the lots, 10 on the root's credit
    state.allocate(member="G", amount=45)
    state.set_spend_limit(wallet="C1", period="day", amount=30)
    state.usage(wallet="G", amount=31)  # the division's limit caps its subtree
    state.usage(wallet="G", amount=30)
    state.void(pick=2)  # C1 -> G: G spent 30 of it
    state.replay(pick=6)
    state.reuse_key(pick=6)
    state.set_status(wallet="C1", status="frozen")
    state.void(pick=3)
    state.set_status(wallet="C1", status="active")
    state.void(pick=3)
    state.void(pick=1)  # R -> C1, then the root closes once empty
    state.set_status(wallet="G", status="closed")
