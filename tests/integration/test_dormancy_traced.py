"""Dormancy's second slice against the real test stack (docs/dormancy.md): the sweep
booked per product and usage id where the credit can be traced, breakage at dormancy,
the `delete` policy, reactivation voiding every posting of a period, and the ERP lines
with their own event types and products."""

from datetime import UTC, datetime, timedelta

import pytest

from common import bootstrap
from common.dormancy import DormancyRunner
from common.errors import Refused
from common.ledger import commands
from tests.e2e.test_erp_export import Books, settled
from tests.integration.test_dormancy import idle, lots, status, top_up, wallet
from tests.support import CALLER, balance, ensure_asset, key, sql, system_account

TRACED = "DRMTRACE"  # sweep, reactivated by a top-up
BREAKAGE = "DRMBRK"  # breakage, reactivated by a top-up
DELETE = "DRMDEL"  # breakage, closed for good


@pytest.fixture(scope="module", autouse=True)
def policies(stack):
    for asset, action, reactivation in (
        (TRACED, "sweep", "automatic"),
        (BREAKAGE, "breakage", "automatic"),
        (DELETE, "breakage", "delete"),
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


@pytest.fixture
def service(stack):
    return bootstrap.service()


@pytest.fixture
def runner(stack):
    return DormancyRunner(bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None, page=20)


def add_on(service, wallet_id: int, asset: str, amount: int, plan: str) -> None:
    """Credit bought for a product (the add-on's plan), expiring: a lot that traces to it."""
    expires_at = datetime.now(UTC) + timedelta(days=30)
    cmd = commands.AddOn(
        wallet_id=wallet_id, asset=asset, amount=amount, external_ref=key("pay"), plan=plan, expires_at=expires_at
    )
    service.add_on(CALLER, cmd, key())


def traced_wallet(service, asset: str) -> int:
    """30 bought for gpu, 20 for storage, and 50 that traces to no product."""
    wallet_id = wallet(service, asset, funded=50)
    add_on(service, wallet_id, asset, 30, "gpu")
    add_on(service, wallet_id, asset, 20, "storage")
    return wallet_id


def postings(stack, wallet_id: int, action: str) -> list[tuple]:
    rows = sql(
        stack,
        "SELECT product, amount, id FROM ledger.transactions WHERE wallet_id = :w AND action = :a ORDER BY id",
        w=wallet_id,
        a=action,
    )
    return [(product, amount) for product, amount, _ in rows]


def account_total(stack, asset: str, role: str) -> int:
    account = system_account(stack, asset, role)
    return sql(stack, "SELECT coalesce(sum(amount), 0) FROM ledger.entries WHERE wallet_id = :w", w=account)[0][0]


def test_the_sweep_is_booked_per_traced_product_and_reactivation_voids_every_posting(stack, service, runner):
    wallet_id = traced_wallet(service, TRACED)
    lots_before = lots(stack, wallet_id)
    idle(stack, [wallet_id], 400)
    dormant_before = account_total(stack, TRACED, "dormant")

    report = runner.run()

    assert sorted(postings(stack, wallet_id, "dormant_sweep"), key=str) == [("gpu", 30), ("storage", 20), (None, 50)]
    assert balance(stack, wallet_id) == 0 and account_total(stack, TRACED, "dormant") - dormant_before == 100
    # each traced posting took its own product's lot
    moved = sql(
        stack,
        "SELECT t.product, l.transaction_id = a.id FROM ledger.lot_movements m"
        " JOIN ledger.transactions t ON t.id = m.transaction_id JOIN ledger.lots l ON l.id = m.lot_id"
        " JOIN ledger.transactions a ON a.id = l.transaction_id AND a.product = t.product"
        " WHERE t.wallet_id = :w AND t.action = 'dormant_sweep'",
        w=wallet_id,
    )
    assert sorted(moved) == [["gpu", True], ["storage", True]]
    assert report.product(TRACED, "personal", "gpu").swept_amount == 30
    assert report.product(TRACED, "personal", "").swept_amount >= 50
    assert f"{TRACED},personal,gpu,1,30,0" in report.products_csv().splitlines()
    assert runner.run().tally(TRACED, "personal").swept == 0  # once per period

    top_up(service, wallet_id, TRACED, 5)

    assert status(stack, wallet_id) == "active" and balance(stack, wallet_id) == 105
    assert lots(stack, wallet_id)[:2] == lots_before  # each lot back, with its expiry
    assert account_total(stack, TRACED, "dormant") == dormant_before  # nothing new: the sweeps' voids
    voids = sql(
        stack,
        "SELECT v.product, v.amount FROM ledger.transactions s JOIN ledger.transactions v"
        " ON v.voids_transaction_id = s.id WHERE s.wallet_id = :w AND s.action = 'dormant_sweep'",
        w=wallet_id,
    )
    assert sorted(map(tuple, voids), key=str) == [("gpu", 30), ("storage", 20), (None, 50)]


def test_breakage_at_dormancy_is_revenue_and_reactivation_reverses_it(stack, service, runner):
    wallet_id = traced_wallet(service, BREAKAGE)
    idle(stack, [wallet_id], 400)
    breakage_before, dormant_before = (
        account_total(stack, BREAKAGE, "breakage"),
        account_total(stack, BREAKAGE, "dormant"),
    )

    report = runner.run()

    assert sorted(postings(stack, wallet_id, "dormant_breakage"), key=str) == [("gpu", 30), ("storage", 20), (None, 50)]
    assert account_total(stack, BREAKAGE, "breakage") - breakage_before == 100
    assert account_total(stack, BREAKAGE, "dormant") == dormant_before
    assert report.tally(BREAKAGE, "personal").broken_amount >= 100 and status(stack, wallet_id) == "dormant"
    standing = {(r["asset"], r["model"]): r for r in bootstrap.ledger().dormancy_standing()}
    assert standing[(BREAKAGE, "personal")]["broken_outstanding"] >= 100

    top_up(service, wallet_id, BREAKAGE, 5)

    assert (status(stack, wallet_id), balance(stack, wallet_id)) == ("active", 105)
    assert account_total(stack, BREAKAGE, "breakage") == breakage_before  # the revenue reversed, no new money


def test_a_delete_policy_closes_the_wallet_for_good(stack, service, runner):
    wallet_id = wallet(service, DELETE, funded=40)
    idle(stack, [wallet_id], 400)
    assert runner.run().tally(DELETE, "personal").closed >= 1
    assert (status(stack, wallet_id), balance(stack, wallet_id)) == ("closed", 0)
    with pytest.raises(Refused) as refused:
        bootstrap.ledger().dormancy_reactivate(wallet_id, {"principal": "tests", "role": "operator"})
    assert refused.value.code == "wallet_closed"
    with pytest.raises(Refused) as refused:
        top_up(service, wallet_id, DELETE, 5)
    assert refused.value.code == "wallet_closed"


def test_the_erp_sees_dormancys_own_event_types_with_their_products(stack, service, runner):
    books = Books(stack)
    swept = traced_wallet(service, TRACED)
    broken = traced_wallet(service, BREAKAGE)
    idle(stack, [swept, broken], 400)
    runner.run()
    top_up(service, swept, TRACED, 5)  # reactivates: the sweeps voided
    ids = [
        row[0]
        for row in sql(
            stack,
            "SELECT id FROM ledger.transactions WHERE wallet_id = ANY (CAST(:w AS bigint[]))"
            " AND (action LIKE 'dormant_%' OR idempotency_key LIKE 'dormant-reactivation:%')",
            w=[swept, broken],
        )
    ]
    settled(stack, ids)
    assert books.exporter().run_pass().caught_up
    seen = {
        (line["event_type"], line["product"], line["account"], line["debit"], line["credit"])
        for transaction_id in ids
        for line in books.lines_of(transaction_id)
    }
    assert ("dormant_sweep", "gpu", "2390", 0, 30) in seen
    assert ("dormant_breakage", "storage", "4100", 0, 20) in seen
    assert ("dormant_reactivation", "gpu", "2390", 30, 0) in seen
    assert ("dormant_reactivation", None, "2300", 0, 50) in seen


def test_a_delete_policy_closes_only_an_empty_wallet(stack, service, runner):
    """Closing needs an empty wallet: credit in a lot already due waits for the expiry
    job (then a later run closes the wallet), and a wallet in debt stays open. Neither
    fails the run."""
    from tests.integration.test_dormancy import use

    with_due_lot = wallet(service, DELETE, funded=40, expiring=25)
    sql(stack, "UPDATE ledger.lots SET expires_at = now() - interval '1 hour' WHERE wallet_id = :w", w=with_due_lot)
    in_debt = service.create_wallet(CALLER, commands.CreateWallet(owner_id=key("o"), asset=DELETE, credit_limit=10))[
        "id"
    ]
    use(service, in_debt, DELETE, 10)
    idle(stack, [with_due_lot, in_debt], 400)

    first = runner.run()

    assert first.total().failed == 0 and first.tally(DELETE, "personal").busy >= 2
    assert [status(stack, w) for w in (with_due_lot, in_debt)] == ["active", "active"]
    assert [balance(stack, w) for w in (with_due_lot, in_debt)] == [65, -10]

    service.expire_lots()  # the due lot's 25 go to breakage
    second = runner.run()

    assert second.total().failed == 0
    assert [status(stack, w) for w in (with_due_lot, in_debt)] == ["closed", "active"]
    assert balance(stack, with_due_lot) == 0
