"""Enterprise and reseller trees through the service layer, against real Postgres, Redis
and Firestore: allocate and reclaim, spend limits and both usage modes under
concurrency, roll-ups on read."""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from common import bootstrap
from common.errors import LedgerError, NotFound, Refused
from common.ledger import commands
from tests.support import CALLER, balance, key, sql, system_account


@pytest.fixture
def service(stack):
    return bootstrap.service()


def wallet(service, model="enterprise", parent=None, owner=None, **fields):
    cmd = commands.CreateWallet(owner_id=owner or key("owner"), asset="TST", model=model, parent_id=parent, **fields)
    return service.create_wallet(CALLER, cmd)["id"]


def top_up(service, wallet_id, amount, **fields):
    cmd = commands.TopUp(wallet_id=wallet_id, asset="TST", amount=amount, external_ref=key("pay"), **fields)
    return service.top_up(CALLER, cmd, key()).body["transaction"]


def allocate(service, child, amount, idempotency_key=None):
    cmd = commands.Allocate(wallet_id=child, asset="TST", amount=amount)
    return service.allocate(CALLER, cmd, idempotency_key or key())


def use(service, wallet_id, amount, usage_id=None):
    usage_id = usage_id or key("u")  # a usage id charges once
    cmd = commands.Usage(wallet_id=wallet_id, asset="TST", amount=amount, usage_id=usage_id, product="gpu")
    return service.usage(CALLER, cmd, key())


def limit(service, wallet_id, **periods):
    service.update_wallet(CALLER, wallet_id, commands.UpdateWallet(spend_limits=periods))


def outcomes(calls, workers=16):
    """Run the calls at once; (successes, refusal codes)."""

    def run(call):
        try:
            call()
            return "ok"
        except LedgerError as error:
            return error.code

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(run, calls))
    return results.count("ok"), sorted(set(results) - {"ok"})


def test_a_three_level_tree_records_root_and_path(service):
    root = wallet(service)
    division = wallet(service, parent=root)
    team = wallet(service, parent=division)
    got = service.get_wallet(CALLER, team)
    assert (got["parent_id"], got["root_id"], got["depth"], got["spend_mode"]) == (division, root, 2, None)
    assert service.get_wallet(CALLER, root)["spend_mode"] == "allocated"


def test_a_member_must_share_its_parents_asset_and_model(stack, service):
    root = wallet(service)
    with pytest.raises(Refused) as refused:
        wallet(service, model="reseller", parent=root)
    assert refused.value.code == "parent_mismatch"
    with pytest.raises(Refused) as refused:
        wallet(service, parent=999_999_999)
    assert refused.value.code == "parent_not_found"
    personal = service.create_wallet(CALLER, commands.CreateWallet(owner_id="p", asset="TST"))["id"]
    with pytest.raises(Refused):
        wallet(service, model="enterprise", parent=personal)
    # the database refuses it too, whatever the caller checked
    with pytest.raises(Exception, match="wallets_parent"):
        sql(
            stack,
            "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id) VALUES ('x', 'TST', 'reseller', :p)",
            p=root,
        )


def test_allocate_and_reclaim_move_money_along_one_edge_once_per_key(stack, service):
    root = wallet(service)
    team = wallet(service, parent=root)
    top_up(service, root, 1_000)
    k = key()
    first = allocate(service, team, 300, k)
    again = allocate(service, team, 300, k)
    assert not first.replayed and again.replayed and again.body == first.body
    assert first.body["transaction"]["counterparty_wallet_id"] == root
    assert (balance(stack, root), balance(stack, team)) == (700, 300)
    service.reclaim(CALLER, commands.Reclaim(wallet_id=team, asset="TST", amount=100), key())
    assert (balance(stack, root), balance(stack, team)) == (800, 200)
    with pytest.raises(Refused) as refused:
        service.reclaim(CALLER, commands.Reclaim(wallet_id=team, asset="TST", amount=201), key())
    assert refused.value.code == "insufficient_funds"
    with pytest.raises(Refused) as refused:
        allocate(service, root, 1)  # the root has no parent
    assert refused.value.code == "not_a_child"


def test_the_database_refuses_an_allocation_between_wallets_that_are_not_parent_and_child(stack, service):
    root = wallet(service)
    division = wallet(service, parent=root)
    team = wallet(service, parent=division)
    top_up(service, root, 10)
    with pytest.raises(Exception, match="not_a_child"):
        sql(
            stack,
            "SELECT ledger.commit_posting(:k, 'h', 'allocate', 'TST', 5, :child, :parent,"
            " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]))",
            k=key(),
            child=team,
            parent=root,
            legs=[root, team],
            amounts=[-5, 5],
        )


def test_a_trees_money_does_not_leave_it_by_transfer(stack, service):
    root = wallet(service)
    team = wallet(service, parent=root)
    top_up(service, root, 100)
    allocate(service, team, 50)
    personal = service.create_wallet(CALLER, commands.CreateWallet(owner_id="p", asset="TST"))["id"]
    with pytest.raises(Refused) as refused:
        service.transfer(
            CALLER, commands.Transfer(from_wallet_id=team, to_wallet_id=personal, asset="TST", amount=1), key()
        )
    assert refused.value.code == "transfer_outside_tree"
    sibling = wallet(service, parent=root)
    service.transfer(CALLER, commands.Transfer(from_wallet_id=team, to_wallet_id=sibling, asset="TST", amount=5), key())
    assert balance(stack, sibling) == 5


def test_allocated_mode_concurrent_usage_never_overspends_an_allocation_or_a_limit(stack, service):
    root = wallet(service)
    team = wallet(service, parent=root)
    member = wallet(service, parent=team)
    top_up(service, root, 10_000)
    allocate(service, team, 2_000)
    allocate(service, member, 1_000)
    ok, refusals = outcomes([lambda: use(service, member, 100) for _ in range(20)])
    assert ok == 10 and refusals == ["insufficient_funds"] and balance(stack, member) == 0
    # a monthly limit below the allocation binds instead
    capped = wallet(service, parent=team)
    allocate(service, capped, 1_000)
    limit(service, capped, month=450)
    ok, refusals = outcomes([lambda: use(service, capped, 50) for _ in range(20)])
    assert ok == 9 and refusals == ["spend_limit_exceeded"] and balance(stack, capped) == 550
    assert service.get_wallet(CALLER, capped)["spend_limits"]["month"]["spent"] == 450
    assert balance(stack, root) == 8_000  # the pool never paid for a member in allocated mode


def test_shared_pool_usage_debits_the_pool_within_each_members_limit(stack, service):
    root = wallet(service, spend_mode="shared_pool")
    division = wallet(service, parent=root)
    members = [wallet(service, parent=division) for _ in range(4)]
    top_up(service, root, 1_000)
    for member in members:
        limit(service, member, month=300)
    calls = [lambda m=m: use(service, m, 50) for m in members for _ in range(10)]
    random.Random(5).shuffle(calls)
    ok, refusals = outcomes(calls)
    # the pool (1,000) binds before the members' limits (4 x 300)
    assert ok == 20 and balance(stack, root) == 0
    assert set(refusals) <= {"insufficient_funds", "spend_limit_exceeded"} and "insufficient_funds" in refusals
    spent = [service.get_wallet(CALLER, m)["spend_limits"]["month"]["spent"] for m in members]
    assert sum(spent) == 1_000 and max(spent) <= 300
    assert all(balance(stack, m) == 0 for m in members)  # members hold nothing: the pool paid


def test_a_divisions_limit_caps_its_whole_subtree_under_concurrency(stack, service):
    root = wallet(service, spend_mode="shared_pool")
    division = wallet(service, parent=root)
    teams = [wallet(service, parent=division) for _ in range(3)]
    top_up(service, root, 10_000)
    limit(service, division, day=700)
    ok, refusals = outcomes([lambda t=t: use(service, t, 100) for t in teams for _ in range(5)])
    assert ok == 7 and refusals == ["spend_limit_exceeded"]
    assert balance(stack, root) == 9_300


def test_a_shared_pool_usage_names_the_member_and_shows_the_pool_paying(stack, service):
    root = wallet(service, spend_mode="shared_pool")
    member = wallet(service, parent=root)
    top_up(service, root, 100)
    transaction = use(service, member, 30).body["transaction"]
    assert transaction["wallet_id"] == member
    revenue = system_account(stack, "TST", "revenue")
    assert [(e["wallet_id"], e["amount"]) for e in transaction["entries"]] == [(root, -30), (revenue, 30)]
    # what the function answered is what the ledger stored
    stored = service.get_transaction(CALLER, transaction["id"])
    assert stored == {**transaction, "voided_by": None}


def test_a_void_of_a_usage_gives_its_spend_back_to_the_limit(stack, service):
    root = wallet(service)
    member = wallet(service, parent=root)
    top_up(service, root, 1_000)
    allocate(service, member, 1_000)
    limit(service, member, month=100)
    used = use(service, member, 100).body["transaction"]
    with pytest.raises(Refused):
        use(service, member, 1)
    service.void(CALLER, commands.Void(transaction_id=used["id"]), key())
    assert service.get_wallet(CALLER, member)["spend_limits"]["month"]["spent"] == 0
    use(service, member, 100)
    assert balance(stack, member) == 900


def test_spend_mode_and_limits_are_wallet_settings_with_clear_refusals(service):
    root = wallet(service)
    member = wallet(service, parent=root)
    with pytest.raises(Refused) as refused:
        service.update_wallet(CALLER, member, commands.UpdateWallet(spend_mode="shared_pool"))
    assert refused.value.code == "not_a_root"
    with pytest.raises(Refused) as refused:
        service.update_wallet(CALLER, member, commands.UpdateWallet(credit_limit=10))
    assert refused.value.code == "member_credit_limit"
    limit(service, member, day=5, month=50)
    limit(service, member, day=None)
    assert set(service.get_wallet(CALLER, member)["spend_limits"]) == {"month"}
    assert (
        service.update_wallet(CALLER, root, commands.UpdateWallet(spend_mode="shared_pool"))["spend_mode"]
        == "shared_pool"
    )


def test_rollups_over_a_three_level_tree_of_1000_members(stack, service):
    """Root, 20 divisions, 980 teams (1,000 members), each funded by allocations down
    the tree; every node's roll-up is its own balance plus all its descendants'."""
    root = wallet(service, owner="acme")
    top_up(service, root, 10_000_000)
    divisions = [wallet(service, parent=root) for _ in range(20)]
    teams = sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id)"
        " SELECT 'team-' || g, 'TST', 'enterprise', (CAST(:divisions AS bigint[]))[1 + g % 20]"
        " FROM generate_series(0, 979) AS g RETURNING id, parent_id",
        divisions=divisions,
    )
    rng = random.Random(7)
    for division in divisions:
        allocate(service, division, 100_000)
    # one allocation per team through the database's own posting path, in one statement
    amounts = {team: rng.randint(1, 2_000) for team, _ in teams}  # 49 teams per division: within 100,000
    sql(
        stack,
        "SELECT ledger.commit_posting('alloc-' || t.id || '-' || :run, 'h', 'allocate', 'TST', t.amount, t.id,"
        " t.parent_id, ARRAY[t.parent_id, t.id], ARRAY[-t.amount, t.amount])"
        " FROM unnest(CAST(:ids AS bigint[]), CAST(:parents AS bigint[]), CAST(:amounts AS bigint[]))"
        " AS t(id, parent_id, amount)",
        run=key(),
        ids=[team for team, _ in teams],
        parents=[parent for _, parent in teams],
        amounts=[amounts[team] for team, _ in teams],
    )
    balances = dict(sql(stack, "SELECT id, balance FROM ledger.wallets WHERE root_id = :r", r=root))
    rollup = service.rollup(CALLER, root)
    assert rollup["members"] == 1_000 and len(rollup["children"]) == 20
    assert rollup["rollup_balance"] == sum(balances.values()) == 10_000_000
    for child in rollup["children"]:
        below = [team for team, parent in teams if parent == child["wallet_id"]]
        assert child["rollup_balance"] == balances[child["wallet_id"]] + sum(balances[t] for t in below)
        assert child["members"] == len(below)
        division_rollup = service.rollup(CALLER, child["wallet_id"])
        assert division_rollup["rollup_balance"] == child["rollup_balance"]
    leaf = service.rollup(CALLER, teams[0][0])
    assert (leaf["rollup_balance"], leaf["members"], leaf["children"]) == (balances[teams[0][0]], 0, [])
    # every member, a page at a time, and nothing outside the tree
    seen, after = [], 0
    while True:
        page = service.members(CALLER, root, after, 300)
        seen += [m["id"] for m in page["members"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sorted(seen) == sorted(set(balances) - {root})
    assert {m["id"] for m in service.members(CALLER, divisions[0], 0, 500)["members"]} == {
        team for team, parent in teams if parent == divisions[0]
    }


def test_a_reseller_buys_wholesale_and_allocates_to_its_customers(stack, service):
    reseller = wallet(service, model="reseller", owner="reseller-1")
    customer = wallet(service, model="reseller", parent=reseller, owner="customer-1")
    discount = system_account(stack, "TST", "discount")
    bought = top_up(service, reseller, 1_000, price=800)
    assert {(e["wallet_id"], e["amount"]) for e in bought["entries"]} == {
        (system_account(stack, "TST", "funding"), -800),
        (discount, -200),
        (reseller, 1_000),
    }
    allocate(service, customer, 400)
    used = use(service, customer, 150, usage_id=key("job-9")).body["transaction"]
    assert used["wallet_id"] == customer and balance(stack, customer) == 250 and balance(stack, reseller) == 600
    assert service.rollup(CALLER, reseller)["rollup_balance"] == 850
    # what a reseller may see: its own tree
    assert [m["id"] for m in service.members(CALLER, reseller, 0, 100)["members"]] == [customer]
    with pytest.raises(NotFound):
        service.members(CALLER, 999_999_999, 0, 10)


def test_a_system_account_never_stands_in_for_the_acting_wallet(stack, service):
    customer = service.create_wallet(CALLER, commands.CreateWallet(owner_id="c", asset="TST"))["id"]
    funding = system_account(stack, "TST", "funding")
    with pytest.raises(Refused) as refused:  # a transfer out of funding would mint money
        service.transfer(
            CALLER, commands.Transfer(from_wallet_id=funding, to_wallet_id=customer, asset="TST", amount=5), key()
        )
    assert refused.value.code == "system_account"
    with pytest.raises(Refused) as refused:
        top_up(service, system_account(stack, "TST", "breakage"), 5)
    assert refused.value.code == "system_account" and balance(stack, customer) == 0


def test_allocated_members_charging_one_divisions_limit_at_once_never_pass_it(stack, service):
    """Members spend their own wallets (no shared row between them): the division's
    counter row is what serializes them."""
    root = wallet(service)
    division = wallet(service, parent=root)
    members = [wallet(service, parent=division) for _ in range(4)]
    top_up(service, root, 10_000)
    allocate(service, division, 8_000)
    for member in members:
        allocate(service, member, 1_000)
    limit(service, division, week=700)
    calls = [lambda m=m: use(service, m, 100) for m in members for _ in range(5)]
    random.Random(3).shuffle(calls)
    ok, refusals = outcomes(calls)
    assert ok == 7 and refusals == ["spend_limit_exceeded"]
    assert sum(balance(stack, m) for m in members) == 4_000 - 700
    assert service.get_wallet(CALLER, division)["spend_limits"]["week"]["spent"] == 700
