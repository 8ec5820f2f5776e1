"""The database holds every posting's legs to its action's rule (db/schema/65_posting_rules.sql).

These calls go around Python, logged in as the functions' own role, and label a
balanced movement with an action it doesn't match: each is refused before anything is
written. The same rule, run over stored rows, makes the reconciliation name a
mislabeled transaction written around commit_posting() by the database owner.
"""

import json

import pytest
from pg8000.exceptions import DatabaseError

from common.adapters.reconciliation import find_violations
from tests.support import balance, key, login_connection, new_wallet, owner, postings_with_key, sql, system_account

POST = (
    "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', :action, 'TST', :amount, :w, :c,"
    " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]), p_voids_transaction_id => :voids,"
    " p_metadata => CAST(:metadata AS jsonb))"
)


def as_functions(stack):
    """A connection as the money functions' login: what a compromised function could send."""
    return login_connection(stack, "poster")


def post(stack, action, amount, wallet, legs, counterparty=None, voids=None, metadata=None, idempotency_key=None):
    con = as_functions(stack)
    try:
        return con.run(
            POST,
            k=idempotency_key or key(),
            action=action,
            amount=amount,
            w=wallet,
            c=counterparty,
            legs=[leg for leg, _ in legs],
            amounts=[amount for _, amount in legs],
            voids=voids,
            metadata=json.dumps(metadata or {}),
        )[0][0]
    finally:
        con.close()


def refusal(stack, action, amount, wallet, legs, **fields):
    """The refusal of a posting, having checked it wrote nothing."""
    k = key()
    touched = sorted({leg for leg, _ in legs if leg is not None} | {wallet})
    before = [balance(stack, w) for w in touched]
    with pytest.raises(DatabaseError) as error:
        post(stack, action, amount, wallet, legs, idempotency_key=k, **fields)
    assert postings_with_key(stack, k) == 0
    assert [balance(stack, w) for w in touched] == before
    return error.value.args[0]["M"], json.loads(error.value.args[0].get("D") or "{}")


def accounts(stack):
    return {role: system_account(stack, "TST", role) for role in ("funding", "revenue", "promotion", "breakage")}


def assert_breaks_rule(found):
    code, details = found
    assert (code, details.get("reason")) == ("invalid_posting", "legs_do_not_follow_rule"), found


def test_a_usage_that_pays_a_customer_out_of_revenue_is_refused(stack):
    customer, revenue = new_wallet(stack), accounts(stack)["revenue"]
    assert_breaks_rule(refusal(stack, "usage", 5, customer, [(revenue, -5), (customer, 5)]))


def test_a_usage_that_charges_another_wallet_than_its_own_is_refused(stack):
    wallet, other, revenue = new_wallet(stack, funded=10), new_wallet(stack, funded=10), accounts(stack)["revenue"]
    assert_breaks_rule(refusal(stack, "usage", 5, wallet, [(other, -5), (revenue, 5)]))


@pytest.mark.parametrize(
    ("action", "source"),
    [("topup", "revenue"), ("topup", "promotion"), ("addon", "promotion"), ("bonus", "funding"), ("bonus", "revenue")],
)
def test_credit_from_the_wrong_system_account_is_refused(stack, action, source):
    wallet = new_wallet(stack)
    assert_breaks_rule(refusal(stack, action, 5, wallet, [(accounts(stack)[source], -5), (wallet, 5)]))


def test_a_top_up_that_credits_more_than_its_amount_or_several_wallets_is_refused(stack):
    wallet, other, funding = new_wallet(stack), new_wallet(stack), accounts(stack)["funding"]
    assert_breaks_rule(refusal(stack, "topup", 5, wallet, [(funding, -50), (wallet, 50)]))
    assert_breaks_rule(refusal(stack, "topup", 10, wallet, [(funding, -10), (wallet, 5), (other, 5)]))


def test_a_wholesale_top_up_follows_its_stored_price(stack):
    wallet, funding = new_wallet(stack), accounts(stack)["funding"]
    discount = system_account(stack, "TST", "discount")
    # a discount leg without the price stored, and a price stored without its discount leg
    assert_breaks_rule(refusal(stack, "topup", 10, wallet, [(funding, -8), (discount, -2), (wallet, 10)]))
    assert_breaks_rule(refusal(stack, "topup", 10, wallet, [(funding, -10), (wallet, 10)], metadata={"price": 8}))
    for price in (0, 11, 8.5, "8"):
        legs = [(funding, -8), (discount, -2), (wallet, 10)]
        assert_breaks_rule(refusal(stack, "topup", 10, wallet, legs, metadata={"price": price}))
    post(stack, "topup", 10, wallet, [(funding, -8), (discount, -2), (wallet, 10)], metadata={"price": 8})
    assert balance(stack, wallet) == 10


def test_a_transfer_moves_only_between_its_wallet_and_counterparty(stack):
    a, b, c = (new_wallet(stack, funded=10) for _ in range(3))
    assert_breaks_rule(refusal(stack, "transfer", 5, a, [(a, -5), (c, 5)], counterparty=b))
    assert_breaks_rule(refusal(stack, "transfer", 5, a, [(c, -5), (b, 5)], counterparty=b))
    assert_breaks_rule(refusal(stack, "transfer", 5, a, [(b, -5), (a, 5)], counterparty=b))  # the wrong way
    assert_breaks_rule(refusal(stack, "transfer", 1, a, [(a, -5), (b, 5)], counterparty=b))  # not its amount
    assert_breaks_rule(refusal(stack, "transfer", 5, a, [(a, -5), (b, 5)]))  # no counterparty named
    assert_breaks_rule(refusal(stack, "transfer", 5, a, [(a, -5), (a, 5)], counterparty=a))


def tree(stack):
    """A root with 10 and a member holding 5 of it, built as the owner."""
    root = sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code, model) VALUES (:o, 'TST', 'enterprise') RETURNING id",
        o=key("owner"),
    )[0][0]
    member = sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id) VALUES (:o, 'TST', 'enterprise', :p)"
        " RETURNING id",
        o=key("owner"),
        p=root,
    )[0][0]
    funding = accounts(stack)["funding"]
    post(stack, "topup", 10, root, [(funding, -10), (root, 10)])
    post(stack, "allocate", 5, member, [(root, -5), (member, 5)], counterparty=root)
    return root, member


def test_allocate_and_reclaim_move_along_the_edge_in_their_own_direction(stack):
    root, member = tree(stack)
    assert_breaks_rule(refusal(stack, "allocate", 2, member, [(member, -2), (root, 2)], counterparty=root))
    assert_breaks_rule(refusal(stack, "reclaim", 2, member, [(root, -2), (member, 2)], counterparty=root))
    post(stack, "reclaim", 2, member, [(member, -2), (root, 2)], counterparty=root)
    assert (balance(stack, root), balance(stack, member)) == (7, 3)


def usage_of(stack, wallet, amount):
    return post(stack, "usage", amount, wallet, [(wallet, -amount), (accounts(stack)["revenue"], amount)])


def test_a_void_is_exactly_the_negation_of_its_original(stack):
    wallet, other = new_wallet(stack, funded=10), new_wallet(stack, funded=10)
    revenue = accounts(stack)["revenue"]
    original = usage_of(stack, wallet, 4)
    for legs in (
        [(revenue, -4), (other, 4)],  # the refund to someone else
        [(revenue, -8), (wallet, 8)],  # more than was charged
        [(revenue, -2), (wallet, 2)],  # less than was charged
        [(revenue, -4), (wallet, 2), (other, 2)],
    ):
        assert_breaks_rule(refusal(stack, "void", 4, wallet, legs, voids=original))
    post(stack, "void", 4, wallet, [(revenue, -4), (wallet, 4)], voids=original)
    assert balance(stack, wallet) == 10


def test_a_void_carries_its_originals_asset_amount_wallet_and_counterparty(stack):
    wallet, other = new_wallet(stack, funded=10), new_wallet(stack, funded=10)
    revenue = accounts(stack)["revenue"]
    original = usage_of(stack, wallet, 4)
    legs = [(revenue, -4), (wallet, 4)]
    assert_breaks_rule(refusal(stack, "void", 4, other, legs, voids=original))
    assert_breaks_rule(refusal(stack, "void", 3, wallet, legs, voids=original))
    assert_breaks_rule(refusal(stack, "void", 4, wallet, legs, voids=original, counterparty=other))
    assert_breaks_rule(refusal(stack, "void", 4, wallet, legs, voids=2**62))  # no such original


def test_an_expiry_moves_only_from_its_wallet_into_breakage(stack):
    wallet, revenue = new_wallet(stack, funded=10), accounts(stack)["revenue"]
    k = f"lot-expiry:{key()}"
    with pytest.raises(DatabaseError) as error:
        post(stack, "expiry", 5, wallet, [(wallet, -5), (revenue, 5)], idempotency_key=k)
    assert error.value.args[0]["M"] == "invalid_posting"
    assert json.loads(error.value.args[0]["D"])["reason"] == "legs_do_not_follow_rule"
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 10


def lot_of(stack, wallet, amount):
    """A top-up of `amount` into a lot of `wallet` that expires tomorrow, posted as the
    money functions post it: the lot's id."""
    funding = accounts(stack)["funding"]
    con = as_functions(stack)
    try:
        transaction_id = con.run(
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'topup', 'TST', :amount, :w, NULL,"
            " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]), p_lot_expires_at => now() + interval '1 day')",
            k=key(),
            amount=amount,
            w=wallet,
            legs=[funding, wallet],
            amounts=[-amount, amount],
        )[0][0]
    finally:
        con.close()
    return sql(stack, "SELECT id FROM ledger.lots WHERE transaction_id = :t", t=transaction_id)[0][0]


def make_due(stack, lot):
    """Time passing, as the owner: the lot's expiry moves a second into the past."""
    sql(stack, "UPDATE ledger.lots SET expires_at = now() - interval '1 second' WHERE id = :l", l=lot)


def expire(stack, wallet, amount, lot):
    """An expiry posted as the money functions' role could send it."""
    con = as_functions(stack)
    try:
        return con.run(
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'expiry', 'TST', :amount, :w, NULL,"
            " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]), p_expiring_lot => :lot)",
            k=f"lot-expiry:{key()}",
            amount=amount,
            w=wallet,
            legs=[wallet, accounts(stack)["breakage"]],
            amounts=[-amount, amount],
            lot=lot,
        )[0][0]
    finally:
        con.close()


def expiry_refusal(stack, wallet, amount, lot):
    before = balance(stack, wallet)
    with pytest.raises(DatabaseError) as error:
        expire(stack, wallet, amount, lot)
    assert balance(stack, wallet) == before
    found = error.value.args[0]["M"], json.loads(error.value.args[0].get("D") or "{}")
    assert found[0] == "invalid_posting" and "due lot" in found[1]["reason"], found


@pytest.mark.parametrize("amount", [50, 100])
def test_an_expiry_of_a_lot_not_yet_due_is_refused(stack, amount):
    wallet = new_wallet(stack)
    lot = lot_of(stack, wallet, 100)
    expiry_refusal(stack, wallet, amount, lot)


def test_an_expiry_of_a_frozen_wallets_lot_not_yet_due_is_refused(stack):
    wallet = new_wallet(stack)
    lot = lot_of(stack, wallet, 100)
    sql(stack, "UPDATE ledger.wallets SET status = 'frozen' WHERE id = :w", w=wallet)
    expiry_refusal(stack, wallet, 100, lot)


def test_an_expiry_takes_all_that_a_due_lot_of_its_own_wallet_holds(stack):
    wallet, other = new_wallet(stack), new_wallet(stack)
    lot, others_lot = lot_of(stack, wallet, 100), lot_of(stack, other, 100)
    lot_of(stack, wallet, 100)  # a second, unexpired lot a partial expiry could reach into
    make_due(stack, lot)
    make_due(stack, others_lot)
    expiry_refusal(stack, wallet, 50, lot)  # a part of it
    expiry_refusal(stack, wallet, 100, others_lot)  # another wallet's lot, named for this one
    expire(stack, wallet, 100, lot)  # what the expiry job would do
    assert balance(stack, wallet) == 100
    assert sql(stack, "SELECT remaining FROM ledger.lots WHERE id = :l", l=lot) == [[0]]


def test_a_posting_dated_by_its_caller_is_refused(stack):
    """A back-dated usage would charge a spend-limit period already over."""
    wallet, revenue = new_wallet(stack, funded=10), accounts(stack)["revenue"]
    k = key()
    con = as_functions(stack)
    try:
        with pytest.raises(DatabaseError) as error:
            con.run(
                "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'usage', 'TST', 5, :w, NULL,"
                " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]),"
                " p_effective_at => now() - interval '40 days')",
                k=k,
                w=wallet,
                legs=[wallet, revenue],
                amounts=[-5, 5],
            )
    finally:
        con.close()
    assert error.value.args[0]["M"] == "invalid_posting"
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 10


@pytest.mark.parametrize("amount", [0, -5])
def test_an_amount_that_is_not_positive_is_refused_as_a_bad_posting(stack, amount):
    wallet, funding = new_wallet(stack), accounts(stack)["funding"]
    assert_breaks_rule(refusal(stack, "topup", amount, wallet, [(funding, -5), (wallet, 5)]))


def test_an_unknown_action_is_refused_as_a_bad_posting(stack):
    wallet, funding = new_wallet(stack), accounts(stack)["funding"]
    code, details = refusal(stack, "gift", 5, wallet, [(funding, -5), (wallet, 5)])
    assert (code, details["reason"]) == ("invalid_posting", "legs_do_not_follow_rule")
    assert "gift" in details["rule"]


def test_only_a_transfer_allocation_or_reclaim_names_a_counterparty(stack):
    wallet, other = new_wallet(stack, funded=10), new_wallet(stack)
    revenue = accounts(stack)["revenue"]
    assert_breaks_rule(refusal(stack, "usage", 5, wallet, [(wallet, -5), (revenue, 5)], counterparty=other))


def test_a_batch_refuses_a_mislabeled_posting_alone(stack):
    customer, revenue = new_wallet(stack), accounts(stack)["revenue"]
    payer = new_wallet(stack, funded=10)
    batch = [
        {"item": 0, "key": key(), "request_hash": "h", "action": "usage", "asset": "TST", "amount": 5,
         "wallet_id": customer, "leg_wallets": [revenue, customer], "leg_amounts": [-5, 5]},
        {"item": 1, "key": key(), "request_hash": "h", "action": "usage", "asset": "TST", "amount": 5,
         "wallet_id": payer, "leg_wallets": [payer, revenue], "leg_amounts": [-5, 5]},
    ]  # fmt: skip
    con = as_functions(stack)
    try:
        rows = con.run(
            "SELECT item, error_message, error_detail FROM ledger.commit_postings(CAST(:b AS jsonb)) ORDER BY item",
            b=json.dumps(batch),
        )
    finally:
        con.close()
    assert rows[0][1] == "invalid_posting" and json.loads(rows[0][2])["reason"] == "legs_do_not_follow_rule"
    assert rows[1][1] is None
    assert (balance(stack, customer), balance(stack, payer)) == (0, 5)


# Reconciliation: the same rule over stored rows -------------------------------------


def write_around_the_posting(con, action, amount, wallet, legs, counterparty=None, voids=None):
    """A balanced transaction inserted by the owner, with the cached balances kept, so
    only the posting rule can tell that it is wrong."""
    transaction_id = con.run(
        "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id,"
        " counterparty_wallet_id, voids_transaction_id) VALUES (:k, 'h', :action, 'TST', :amount, :w, :c, :v)"
        " RETURNING id",
        k=key(),
        action=action,
        amount=amount,
        w=wallet,
        c=counterparty,
        v=voids,
    )[0][0]
    balances_after = []
    for leg_wallet, leg_amount in legs:
        after = con.run(
            "UPDATE ledger.wallets SET balance = balance + :a, entry_count = entry_count + 1"
            " WHERE id = :w AND kind = 'customer' RETURNING balance",
            a=leg_amount,
            w=leg_wallet,
        )
        balances_after.append(after[0][0] if after else None)
    # one statement: the guard checks that each INSERT's legs balance
    con.run(
        "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount, balance_after)"
        " SELECT :t, l.w, 'TST', l.a, l.b"
        " FROM unnest(CAST(:ws AS bigint[]), CAST(:amounts AS bigint[]), CAST(:bs AS bigint[])) AS l(w, a, b)",
        t=transaction_id,
        ws=[leg for leg, _ in legs],
        amounts=[leg_amount for _, leg_amount in legs],
        bs=balances_after,
    )
    return transaction_id


@pytest.mark.parametrize("case", ["usage_out_of_revenue", "transfer_to_a_third_wallet", "void_to_a_third_wallet"])
def test_reconciliation_names_a_mislabeled_transaction_written_around_the_posting(stack, case):
    customer, other, third = new_wallet(stack, funded=10), new_wallet(stack, funded=10), new_wallet(stack)
    revenue = accounts(stack)["revenue"]
    original = usage_of(stack, customer, 4)
    con = owner(stack)
    try:
        con.run("BEGIN")
        if case == "usage_out_of_revenue":
            bad = write_around_the_posting(con, "usage", 5, customer, [(revenue, -5), (customer, 5)])
        elif case == "transfer_to_a_third_wallet":
            legs = [(customer, -5), (third, 5)]
            bad = write_around_the_posting(con, "transfer", 5, customer, legs, counterparty=other)
        else:
            bad = write_around_the_posting(con, "void", 4, customer, [(revenue, -4), (third, 4)], voids=original)
        violations = find_violations(lambda statement: con.run(statement))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert list(violations) == ["entries_follow_posting_rule"], violations
    assert [row[0] for row in violations["entries_follow_posting_rule"]] == [bad]


def test_a_checkpoint_leaves_out_only_the_transactions_checked_before_it(stack):
    """After each test only the transactions it posted get the rule's comparison
    (tests/*/conftest.py): a checkpoint just below a mislabeled transaction still names
    it, one at it does not, and the other invariants are checked whatever the checkpoint."""
    customer = new_wallet(stack, funded=10)
    revenue = accounts(stack)["revenue"]
    con = owner(stack)
    try:
        con.run("BEGIN")
        bad = write_around_the_posting(con, "usage", 5, customer, [(revenue, -5), (customer, 5)])
        before = find_violations(lambda statement: con.run(statement), since_transaction_id=bad - 1)
        at = find_violations(lambda statement: con.run(statement), since_transaction_id=bad)
        con.run("UPDATE ledger.wallets SET balance = balance + 1 WHERE id = :w", w=customer)
        unbalanced = find_violations(lambda statement: con.run(statement), since_transaction_id=bad)
        con.run("ROLLBACK")
    finally:
        con.close()
    assert [row[0] for row in before["entries_follow_posting_rule"]] == [bad]
    assert "entries_follow_posting_rule" not in at
    assert "cached_balance_equals_entry_sum" in unbalanced


def test_the_operator_can_run_the_reconciliation(stack):
    """`python -m common.reconcile` logs in as the operator: the rule check is one of
    its queries, so that role may call the rule."""
    con = login_connection(stack, "operator")
    try:
        assert "entries_follow_posting_rule" not in find_violations(lambda statement: con.run(statement))
    finally:
        con.close()


def test_reconciliation_names_a_many_legged_posting_and_its_void_without_a_long_comparison(stack):
    wallets = [new_wallet(stack) for _ in range(3)]
    funding = accounts(stack)["funding"]
    con = owner(stack)
    try:
        con.run("BEGIN")
        legs = [(funding, -6), *[(wallet, 2) for wallet in wallets]]
        topup = write_around_the_posting(con, "topup", 6, wallets[0], legs)
        void = write_around_the_posting(con, "void", 6, wallets[0], [(w, -a) for w, a in legs], voids=topup)
        violations = find_violations(lambda statement: con.run(statement))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert sorted(violations["entries_follow_posting_rule"]) == [
        [topup, "topup", "the legs are not what topup moves"],
        [void, "void", "more legs than any rule writes"],
    ]


def test_reconciliation_names_an_expiry_of_a_lot_that_was_not_due(stack):
    """An expiry posted when its lot was due, then the lot's expiry moved later by the
    owner, as an expiry written around the posting would look."""
    wallet = new_wallet(stack)
    lot = lot_of(stack, wallet, 100)
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run("UPDATE ledger.lots SET expires_at = now() - interval '1 second' WHERE id = :l", l=lot)
        expiry = con.run(
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'expiry', 'TST', 100, :w, NULL,"
            " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]), p_expiring_lot => :lot)",
            k=f"lot-expiry:{key()}",
            w=wallet,
            legs=[wallet, accounts(stack)["breakage"]],
            amounts=[-100, 100],
            lot=lot,
        )[0][0]
        assert "expiry_only_of_due_lots" not in find_violations(lambda statement: con.run(statement))
        con.run("UPDATE ledger.lots SET expires_at = now() + interval '1 day' WHERE id = :l", l=lot)
        violations = find_violations(lambda statement: con.run(statement))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert list(violations) == ["expiry_only_of_due_lots"], violations
    assert [row[:2] for row in violations["expiry_only_of_due_lots"]] == [[expiry, lot]]
