"""The database refuses bad money rows by itself: these tests go around Python."""

import pytest
from pg8000.exceptions import DatabaseError

from emulators.logins import LOGINS
from tests.support import key, login_connection, new_wallet, owner, sql, system_account


def refused(stack, *statements, **params):
    con = owner(stack)
    try:
        con.run("BEGIN")
        with pytest.raises(DatabaseError) as error:
            for statement in statements:
                con.run(statement, **params)
            con.run("COMMIT")
        return error.value.args[0]
    finally:
        con.close()


def new_transaction(wallet_id):
    return (
        f"INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id)"
        f" VALUES ('{key()}', 'h', 'topup', 'TST', 5, {wallet_id})"
    )


def test_unbalanced_legs_are_refused(stack):
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    error = refused(
        stack,
        new_transaction(wallet),
        "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES"
        f" (currval('ledger.transactions_id_seq'), {funding}, 'TST', -5),"
        f" (currval('ledger.transactions_id_seq'), {wallet}, 'TST', 4)",
    )
    assert error["M"] == "unbalanced_transaction"


def test_a_single_leg_is_refused(stack):
    wallet = new_wallet(stack)
    error = refused(
        stack,
        new_transaction(wallet),
        "INSERT INTO ledger.entries (transaction_id, wallet_id,"
        f" asset_code, amount) VALUES (currval('ledger.transactions_id_seq'), {wallet}, 'TST', 5)",
    )
    assert error["M"] == "unbalanced_transaction"


def test_a_transaction_without_entries_cannot_commit(stack):
    error = refused(stack, new_transaction(new_wallet(stack)))
    assert error["M"] == "unbalanced_transaction"


def test_a_committed_transaction_is_sealed(stack):
    wallet, funding = new_wallet(stack, funded=10), system_account(stack, "TST", "funding")
    old = sql(stack, "SELECT max(transaction_id) FROM ledger.entries WHERE wallet_id = :w", w=wallet)[0][0]
    error = refused(
        stack,
        "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES"
        f" ({old}, {funding}, 'TST', -1), ({old}, {funding}, 'TST', 1)",
    )
    assert error["M"] == "sealed_transaction"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.entries SET amount = amount + 1 WHERE wallet_id = {w}",
        "DELETE FROM ledger.entries WHERE wallet_id = {w}",
        "TRUNCATE ledger.entries CASCADE",
        "UPDATE ledger.transactions SET amount = 1 WHERE wallet_id = {w}",
        "DELETE FROM ledger.transactions WHERE wallet_id = {w}",
    ],
)
def test_entries_and_transactions_are_append_only(stack, statement):
    wallet = new_wallet(stack, funded=10)
    assert refused(stack, statement.format(w=wallet))["M"] == "append_only"


def test_a_customer_balance_cannot_go_below_its_limit_even_by_hand(stack):
    wallet = new_wallet(stack, funded=10, credit_limit=5)
    error = refused(stack, f"UPDATE ledger.wallets SET balance = -6 WHERE id = {wallet}")
    assert error["n"] == "wallets_balance_within_limit"


def test_an_entry_takes_its_wallets_asset(stack):
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    error = refused(
        stack,
        new_transaction(wallet),
        "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES"
        f" (currval('ledger.transactions_id_seq'), {funding}, 'IDR', -5),"
        f" (currval('ledger.transactions_id_seq'), {wallet}, 'IDR', 5)",
    )
    assert (error["C"], error["M"]) == ("23503", "entry_wallet_unknown")


def test_an_entry_names_a_wallet_and_a_transaction_that_exist(stack):
    """The references the foreign keys held until migration 0019, now read without a
    row lock by the entries' statement-level check."""
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    insert = "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES"
    legs = insert + " ({t}, {a}, 'TST', -5), ({t}, {b}, 'TST', 5)"
    current = "currval('ledger.transactions_id_seq')"
    no_wallet = refused(stack, new_transaction(wallet), legs.format(t=current, a=funding, b=2**62))
    assert (no_wallet["C"], no_wallet["M"]) == ("23503", "entry_wallet_unknown")
    assert str(2**62) in no_wallet["D"]
    no_transaction = refused(stack, legs.format(t=2**62, a=funding, b=wallet))
    assert (no_transaction["C"], no_transaction["M"]) == ("23503", "entry_transaction_unknown")


def test_a_transaction_names_an_asset_that_exists(stack):
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    error = refused(
        stack,
        new_transaction(wallet).replace("'TST'", "'NOPE'"),
        "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES"
        f" (currval('ledger.transactions_id_seq'), {funding}, 'TST', -5),"
        f" (currval('ledger.transactions_id_seq'), {wallet}, 'TST', 5)",
    )
    assert (error["C"], error["M"]) == ("23503", "unknown_asset")


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM ledger.wallets WHERE id = {w}",
        "TRUNCATE ledger.wallets CASCADE",
        "UPDATE ledger.wallets SET id = DEFAULT WHERE id = {w}",
        "DELETE FROM ledger.assets WHERE code = 'TST'",
        "UPDATE ledger.assets SET code = 'TST9' WHERE code = 'TST'",
        "TRUNCATE ledger.assets CASCADE",
    ],
)
def test_wallets_and_assets_are_kept_with_their_keys(stack, statement):
    """What lets the references above go without a lock: nothing they name goes away."""
    wallet = new_wallet(stack)
    error = refused(stack, statement.format(w=wallet))
    assert error["M"] in ("kept_for_good", "wallet_identity_fixed"), error


def test_post_refuses_an_overspend_and_writes_nothing(stack):
    wallet, revenue = new_wallet(stack, funded=10), system_account(stack, "TST", "revenue")
    k = key()
    error = refused(
        stack,
        "SELECT ledger.commit_posting(:k, 'h', 'usage', 'TST', 11, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]))",
        k=k,
        w=wallet,
        legs=[wallet, revenue],
        amts=[-11, 11],
    )
    assert error["M"] == "insufficient_funds"
    assert sql(stack, "SELECT count(*) FROM ledger.transactions WHERE idempotency_key = :k", k=k)[0][0] == 0


def test_post_with_a_used_key_replays_instead_of_posting_twice(stack):
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    k = key()
    call = (
        "SELECT replayed, transaction_id, balances, original"
        " FROM ledger.commit_posting(:k, :h, 'topup', 'TST', 5, :w, NULL,"
        " CAST(:legs AS bigint[]), CAST(:amts AS bigint[]), 'ref')"
    )
    first = sql(stack, call, k=k, h="h1", w=wallet, legs=[funding, wallet], amts=[-5, 5])[0]
    second = sql(stack, call, k=k, h="h1", w=wallet, legs=[funding, wallet], amts=[-5, 5])[0]
    assert (first[0], second[0]) == (False, True)
    assert first[1] == second[1] and first[2] == [None, 5]
    assert second[3]["id"] == first[1] and second[3]["entries"][1]["balance_after"] == 5
    assert (
        refused(stack, call, k=k, h="h2", w=wallet, legs=[funding, wallet], amts=[-5, 5])["M"]
        == "idempotency_key_reused"
    )
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=wallet)[0][0] == 5


@pytest.mark.parametrize("login", list(LOGINS))
def test_no_function_or_operator_role_can_touch_money_directly(stack, login):
    wallet = new_wallet(stack, funded=10)
    app = login_connection(stack, login)
    try:
        for statement in (
            f"UPDATE ledger.wallets SET balance = 1000 WHERE id = {wallet}",
            f"INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount)"
            f" VALUES (1, {wallet}, 'TST', 5)",
            "INSERT INTO ledger.wallets (owner_id, asset_code, kind, system_role, model)"
            " VALUES ('x', 'TST', 'system', 'funding2', 'system')",
            "INSERT INTO ledger.outbox (transaction_id) VALUES (1)",
            "DELETE FROM ledger.outbox",
            "UPDATE ledger.outbox SET created_at = now()",
            "UPDATE ledger.outbox SET published_at = now()",  # only through ledger.mark_published()
            "UPDATE ledger.outbox SET published_at = NULL",
        ):
            with pytest.raises(DatabaseError) as error:
                app.run(statement)
            assert error.value.args[0]["C"] == "42501"  # insufficient_privilege
    finally:
        app.close()


@pytest.mark.parametrize(
    "change",
    ["id = DEFAULT", "owner_id = 'someone-else'", "model = 'reseller'", "asset_code = 'TST2'", "system_role = 'x'"],
)
def test_a_wallets_identity_never_changes(stack, change):
    """Events are rendered from a wallet's owner and model when read: they are fixed."""
    wallet = new_wallet(stack)
    assert refused(stack, f"UPDATE ledger.wallets SET {change} WHERE id = {wallet}")["M"] == "wallet_identity_fixed"


def test_a_closed_wallet_must_be_empty(stack):
    wallet = new_wallet(stack, funded=10)
    assert (
        refused(stack, f"UPDATE ledger.wallets SET status = 'closed' WHERE id = {wallet}")["n"]
        == "wallets_closed_is_empty"
    )
