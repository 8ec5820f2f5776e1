"""Dormant processing against real Postgres, Redis, Firestore and the Pub/Sub emulator
(docs/dormancy.md): warnings, marks and sweeps once per (wallet, period), a usage racing
the sweep, refusals of a dormant wallet, and reactivation giving back exactly what was
swept. Each policy has its own asset, so other tests' wallets are never in its runs.
Time passing is the owner moving a wallet's last activity into the past."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common import bootstrap
from common.dormancy import DormancyRunner
from common.errors import LedgerError, Refused
from common.ledger import commands
from tests.support import (
    CALLER,
    balance,
    ensure_asset,
    key,
    owner,
    pull_messages,
    pull_subscription,
    sql,
    system_account,
)

SWEEP = "DRMSWEEP"  # sweep, reactivated by a top-up
OPERATOR = "DRMOPER"  # sweep, reactivated by an operator only
MARK = "DRMMARK"  # mark only


@pytest.fixture(scope="module", autouse=True)
def policies(stack):
    for asset, action, reactivation in (
        (SWEEP, "sweep", "automatic"),
        (OPERATOR, "sweep", "operator"),
        (MARK, "mark", "automatic"),
    ):
        ensure_asset(stack, asset)
        sql(
            stack,
            "INSERT INTO ledger.dormancy_policies (asset_code, model, inactivity, warning, action, reactivation)"
            " VALUES (:a, 'personal', interval '365 days', interval '30 days', :act, :re) ON CONFLICT DO NOTHING",
            a=asset,
            act=action,
            re=reactivation,
        )


@pytest.fixture(scope="module")
def notices(stack):
    """A pull subscription on the notifications topic: the warnings the runs sent."""
    name = pull_subscription(stack, stack.settings().notifications_topic, "dormancy-notices")
    yield name
    stack.delete_subscription(name)


def warnings_of(stack, subscription: str, wallet_id: int, at_least: int = 0) -> list[dict[str, Any]]:
    """The warnings about the wallet seen so far, pulling until `at_least` arrived: a
    pull that returns at once may come back empty while a message is on its way."""
    deadline = time.monotonic() + 20
    while True:
        _seen.extend(pull_messages(stack, subscription))
        found = [n for n in _seen if n.get("kind") == "wallet_dormancy_warning" and n["wallet_id"] == wallet_id]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


_seen: list[dict[str, Any]] = []


@pytest.fixture
def service(stack):
    return bootstrap.service()


@pytest.fixture
def runner(stack, service):
    return DormancyRunner(bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None, page=20)


def wallet(service, asset: str, funded: int = 0, expiring: int = 0) -> int:
    wallet_id = service.create_wallet(CALLER, commands.CreateWallet(owner_id=key("o"), asset=asset))["id"]
    if expiring:
        top_up(service, wallet_id, asset, expiring, datetime.now(UTC) + timedelta(days=30))
    if funded:
        top_up(service, wallet_id, asset, funded)
    return wallet_id


def top_up(service, wallet_id: int, asset: str, amount: int, expires_at: datetime | None = None) -> dict:
    cmd = commands.TopUp(
        wallet_id=wallet_id, asset=asset, amount=amount, external_ref=key("pay"), expires_at=expires_at
    )
    return service.top_up(CALLER, cmd, key()).body["transaction"]


def use(service, wallet_id: int, asset: str, amount: int) -> dict:
    cmd = commands.Usage(wallet_id=wallet_id, asset=asset, amount=amount, usage_id=key("u"), product="gpu")
    return service.usage(CALLER, cmd, key()).body["transaction"]


def idle(stack, wallet_ids: list[int], days: int) -> None:
    sql(
        stack,
        "UPDATE ledger.wallets SET last_activity_at = now() - make_interval(days => :d) WHERE id = ANY (:w)",
        d=days,
        w=wallet_ids,
    )


def status(stack, wallet_id: int) -> str:
    return sql(stack, "SELECT status FROM ledger.wallets WHERE id = :w", w=wallet_id)[0][0]


def dormant_account(stack, asset: str) -> int:
    account = system_account(stack, asset, "dormant")
    return sql(stack, "SELECT coalesce(sum(amount), 0) FROM ledger.entries WHERE wallet_id = :w", w=account)[0][0]


def sweeps(stack, wallet_id: int) -> list[list[Any]]:
    return sql(
        stack,
        "SELECT id, amount FROM ledger.transactions WHERE wallet_id = :w AND action = 'dormant_sweep' ORDER BY id",
        w=wallet_id,
    )


def lots(stack, wallet_id: int) -> list[list[Any]]:
    return sql(stack, "SELECT id, remaining, expires_at FROM ledger.lots WHERE wallet_id = :w ORDER BY id", w=wallet_id)


def test_a_run_warns_marks_and_sweeps_once_and_a_second_run_finds_nothing_to_do(stack, service, runner, notices):
    inactive, warned, recent = wallet(service, SWEEP, 100), wallet(service, SWEEP, 40), wallet(service, SWEEP, 5)
    marked = wallet(service, MARK, 70)
    idle(stack, [inactive, marked], 400)
    idle(stack, [warned], 350)  # inside the 30 days before dormancy
    before = dormant_account(stack, SWEEP)
    # this test's wallets only: other jobs of the stack (the automation's tick) may post
    mine = "SELECT count(*) FROM ledger.transactions WHERE wallet_id = ANY (CAST(:ws AS bigint[]))"
    transactions = sql(stack, mine, ws=[inactive, warned, recent, marked])[0][0]

    first = runner.run()

    assert [status(stack, w) for w in (inactive, warned, recent, marked)] == ["dormant", "active", "active", "dormant"]
    assert [balance(stack, w) for w in (inactive, warned, recent, marked)] == [0, 40, 5, 70]
    assert [amount for _, amount in sweeps(stack, inactive)] == [100] and sweeps(stack, marked) == []
    assert dormant_account(stack, SWEEP) - before == 100
    assert first.tally(SWEEP, "personal").swept_amount >= 100
    assert first.tally(MARK, "personal").marked >= 1
    (warning,) = warnings_of(stack, notices, warned, at_least=1)
    assert warning["asset"] == SWEEP and warning["dormant_on"]
    assert "asset,model,scanned" in first.as_csv().splitlines()[0]

    second = runner.run()

    assert (second.total().warned, second.total().marked, second.total().swept) == (0, 0, 0)
    assert sql(stack, mine, ws=[inactive, warned, recent, marked])[0][0] == transactions + 1
    assert dormant_account(stack, SWEEP) - before == 100
    assert len(warnings_of(stack, notices, warned)) == 1  # once per wallet and period
    standing = {(r["asset"], r["model"]): r for r in bootstrap.ledger().dormancy_standing()}
    assert standing[(SWEEP, "personal")]["dormant"] >= 1 and standing[(MARK, "personal")]["swept_outstanding"] == 0


def test_a_warned_wallet_is_not_scanned_again_until_it_is_due_so_a_run_cut_short_goes_further(stack, service):
    """Paced runs stop on their time budget (docs/background-jobs.md): a run that rescanned
    every wallet still in its warning period would never get past them."""
    warned = [wallet(service, SWEEP, 10) for _ in range(3)]
    idle(stack, warned, 350)  # inside the 30 days before dormancy
    first = DormancyRunner(bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None, page=20).run()
    assert first.tally(SWEEP, "personal").warned >= 3
    scanned = []

    class Scanning:
        def dormancy_run(self, limit, after):
            outcomes = bootstrap.ledger().dormancy_run(limit, after)
            scanned.extend(o["wallet_id"] for o in outcomes)
            return outcomes

    DormancyRunner(Scanning(), bootstrap.notices, lambda transaction_id: None, page=20).run()
    assert not set(warned) & set(scanned)
    idle(stack, warned[:1], 400)  # now due: scanned again, and marked dormant
    DormancyRunner(Scanning(), bootstrap.notices, lambda transaction_id: None, page=20).run()
    assert warned[0] in scanned and status(stack, warned[0]) == "dormant"


def test_a_run_stops_on_its_time_budget_and_says_so(stack, service):
    due = wallet(service, SWEEP, 10)
    idle(stack, [due], 400)
    stopped = DormancyRunner(bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None, budget_s=0.0).run()
    assert stopped.stopped_on_budget and stopped.total().scanned == 0 and status(stack, due) == "active"
    finished = DormancyRunner(bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None).run()
    assert not finished.stopped_on_budget and status(stack, due) == "dormant"


def test_a_dormant_wallets_refused_action_answers_wallet_dormant(stack, service, runner):
    swept, marked = wallet(service, OPERATOR, 30), wallet(service, MARK, 30)
    idle(stack, [swept, marked], 400)
    runner.run()
    for wallet_id, asset in ((swept, OPERATOR), (marked, MARK)):
        with pytest.raises(Refused) as refused:
            use(service, wallet_id, asset, 1)
        assert (refused.value.code, refused.value.status) == ("wallet_dormant", 422)
    with pytest.raises(Refused) as refused:  # its policy wants an operator to reactivate it
        top_up(service, swept, OPERATOR, 10)
    assert refused.value.code == "wallet_dormant"
    # nor does an operator's status change take it out of dormancy around reactivation
    with pytest.raises(Refused) as refused:
        service.update_wallet(CALLER, swept, commands.UpdateWallet(status="active"))
    assert refused.value.code == "wallet_dormant"
    assert balance(stack, swept) == 0 and status(stack, swept) == "dormant"


def test_only_the_runner_sweeps_and_only_reactivation_voids_a_sweep(stack, service, runner):
    other = wallet(service, SWEEP, 25)
    target = wallet(service, SWEEP, 20)
    idle(stack, [target], 400)
    runner.run()
    ((sweep_id, _),) = sweeps(stack, target)
    with pytest.raises(LedgerError) as refused:
        service.void(CALLER, commands.Void(transaction_id=sweep_id), key())
    assert refused.value.code == "not_voidable"
    account = system_account(stack, SWEEP, "dormant")
    with pytest.raises(Exception, match="only the dormancy runner sweeps a wallet"):
        sql(
            stack,
            "SELECT ledger.commit_posting(:k, 'h', 'dormant_sweep', :a, 25, :w, NULL, CAST(:legs AS bigint[]),"
            " CAST(:amts AS bigint[]))",
            k=f"dormant-sweep:{key()}",
            a=SWEEP,
            w=other,
            legs=[other, account],
            amts=[-25, 25],
        )
    assert balance(stack, other) == 25 and balance(stack, target) == 0


def test_reactivation_by_a_top_up_restores_exactly_what_was_swept(stack, service, runner):
    wallet_id = wallet(service, SWEEP, funded=70, expiring=50)
    use(service, wallet_id, SWEEP, 20)  # from the lot: 30 of it left, and 70 without expiry
    lots_before = lots(stack, wallet_id)
    idle(stack, [wallet_id], 400)
    before = dormant_account(stack, SWEEP)
    runner.run()
    assert balance(stack, wallet_id) == 0 and [lot[1] for lot in lots(stack, wallet_id)] == [0]
    assert dormant_account(stack, SWEEP) - before == 100

    top_up(service, wallet_id, SWEEP, 5)

    assert status(stack, wallet_id) == "active" and balance(stack, wallet_id) == 105
    assert lots(stack, wallet_id) == lots_before  # the lot back, with its expiry
    assert dormant_account(stack, SWEEP) == before  # nothing new: the sweep's void
    ((sweep_id, _),) = sweeps(stack, wallet_id)
    voids = sql(stack, "SELECT amount FROM ledger.transactions WHERE voids_transaction_id = :t", t=sweep_id)
    assert voids == [[100]]
    assert runner.run().tally(SWEEP, "personal").swept == 0  # active again from the reactivation on


def test_reactivation_by_an_operator_restores_what_was_swept_once(stack, service, runner):
    wallet_id = wallet(service, OPERATOR, 60)
    idle(stack, [wallet_id], 400)
    runner.run()
    ledger = bootstrap.ledger()
    void_id = ledger.dormancy_reactivate(wallet_id, {"principal": "tests", "role": "operator"})
    assert void_id is not None and balance(stack, wallet_id) == 60 and status(stack, wallet_id) == "active"
    assert ledger.dormancy_reactivate(wallet_id, None) is None  # not dormant any more: nothing to do
    assert balance(stack, wallet_id) == 60
    use(service, wallet_id, OPERATOR, 10)
    assert balance(stack, wallet_id) == 50


def test_a_wallet_a_posting_holds_is_left_for_the_next_run(stack, service, runner):
    wallet_id = wallet(service, SWEEP, 15)
    idle(stack, [wallet_id], 400)
    holder = owner(stack)
    try:
        holder.run("BEGIN")
        holder.run("SELECT 1 FROM ledger.wallets WHERE id = :w FOR NO KEY UPDATE", w=wallet_id)
        assert runner.run().tally(SWEEP, "personal").busy >= 1
        assert status(stack, wallet_id) == "active" and balance(stack, wallet_id) == 15
    finally:
        holder.run("ROLLBACK")
        holder.close()
    runner.run()
    assert status(stack, wallet_id) == "dormant" and [a for _, a in sweeps(stack, wallet_id)] == [15]


def test_a_usage_posted_before_the_run_keeps_the_wallet_active(stack, service, runner):
    """The customer's own posting is the activity dormancy counts from."""
    wallet_id = wallet(service, SWEEP, 100)
    idle(stack, [wallet_id], 400)
    use(service, wallet_id, SWEEP, 60)
    runner.run()
    assert (sweeps(stack, wallet_id), balance(stack, wallet_id), status(stack, wallet_id)) == ([], 40, "active")


def test_a_usage_racing_the_sweep_is_posted_before_it_or_refused_after_it_never_both(stack, service):
    # small pages, and the usages from the other end, so the two meet halfway
    runner = DormancyRunner(bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None, page=2)
    wallets = [wallet(service, SWEEP, 100) for _ in range(16)]
    idle(stack, wallets, 400)
    first_posted = threading.Event()

    def spend(wallet_id: int) -> str:
        try:
            use(service, wallet_id, SWEEP, 60)
            return "posted"
        except LedgerError as error:
            return error.code
        finally:
            first_posted.set()

    def sweep() -> None:
        first_posted.wait(60)  # the run starts while the usages are under way
        runner.run()

    with ThreadPoolExecutor(5) as pool:
        run = pool.submit(sweep)
        results = dict(zip(wallets[::-1], pool.map(spend, wallets[::-1]), strict=True))
    run.result()
    runner.run()  # a wallet the race left busy: its usage posted, so it is active now
    assert {"posted", "wallet_dormant"} >= set(results.values())
    for wallet_id, result in results.items():
        swept = [amount for _, amount in sweeps(stack, wallet_id)]
        if result == "posted":
            assert (swept, balance(stack, wallet_id), status(stack, wallet_id)) == ([], 40, "active")
        else:
            assert (result, swept, balance(stack, wallet_id)) == ("wallet_dormant", [100], 0)
