"""Each kind of function logs in as a role with only what it uses (db/schema/99_grants.sql),
and none of them, nor the operator's CLI, is the owner: these tests go around Python and
ask the database what each login may do, then try what it must not."""

from __future__ import annotations

import pytest
from pg8000.exceptions import DatabaseError

from emulators.logins import LOGINS
from tests.support import key, login_connection, new_wallet, sql, system_account

POSTING = (
    "ledger.commit_posting(text,text,text,text,bigint,bigint,bigint,bigint[],bigint[],text,text,text,text,bigint,"
    "jsonb,timestamp with time zone,timestamp with time zone,bigint,text,jsonb)"
)
READS = {"ledger.iso_utc(timestamp with time zone)"}
CALLER = {"ledger.caller(text,text)"}
ERP = {
    "erp.mark_delivered(text,jsonb)",
    "erp.mark_failed(text,text,interval,integer)",
    "erp.open_stream(text)",
    "erp.record_batch(text,text,xid8,bigint,xid8,bigint,text,integer,integer,jsonb)",
    "erp.replay(text)",
    "erp.save_chart(text,jsonb)",
    # the ERP reconciliation's running totals (erp_reconcile and ops reconcile)
    "erp.batch_sums(text[])",
    "erp.fold_delivered(text,integer)",
    "erp.migration_actions()",
}
RELAY = {"ledger.mark_published(bigint[])", "ledger.mark_failed(bigint,text)"}
AFTER_COMMIT = {"ledger.mark_published_after_commit(bigint[])"}
POSTING_RULE = "ledger.posting_rule_breach(text,text,bigint,bigint,bigint,jsonb,bigint,bigint[],bigint[],boolean)"
# A system account's balance (every wallet read) and the checkpoints' step (the sweeper's)
SYSTEM_BALANCE = "ledger.system_balance(bigint)"
ADVANCE_CHECKPOINTS = "ledger.advance_balance_checkpoints(integer)"
# Every routine of the ledger and erp schemas each login may execute; all others it may not.
MAY_EXECUTE = {
    "poster": READS
    | CALLER
    | AFTER_COMMIT
    | {
        POSTING,
        "ledger.commit_postings(jsonb)",
        "ledger.record_usage_refusals(jsonb)",
        "ledger.transaction_json(bigint)",
        "ledger.period_start(text,timestamp with time zone)",
        SYSTEM_BALANCE,
    },
    "wallet_admin": READS
    | CALLER
    | {
        "ledger.transaction_json(bigint)",
        "ledger.period_start(text,timestamp with time zone)",
        SYSTEM_BALANCE,
        "ledger.create_wallet(text,text,text,bigint,jsonb,bigint,text,jsonb)",
        "ledger.create_wallets(jsonb,jsonb)",
        "ledger.update_wallet(bigint,text,bigint,text,jsonb,jsonb,text)",
        "ledger.create_asset(text,smallint,text,jsonb)",
        "ledger.extend_lot(text,bigint,timestamp with time zone,text,text,jsonb)",
        "ledger.rule_json(bigint)",
        "ledger.create_rule(text,text,bigint,bigint,bigint,text,text,bigint[],jsonb,jsonb)",
        "ledger.change_rule(bigint,text,text,jsonb)",
    },
    "access_admin": READS
    | CALLER
    | {
        "ledger.decide_change(bigint,boolean,jsonb,text)",
        "ledger.create_principal(text,text,text,text,text,text,text,jsonb,jsonb,text)",
        "ledger.update_principal(text,text,text,jsonb,jsonb,text)",
        "ledger.grant_role(text,text,text,bigint,jsonb,text)",
        "ledger.revoke_grant(bigint,jsonb,text)",
        "ledger.set_role_rate_limits(text,jsonb,jsonb,text)",
    },
    "relay": READS | RELAY | {"ledger.extend_chain(integer)", "ledger.chain_lag()", ADVANCE_CHECKPOINTS},
    "jobs": READS
    | AFTER_COMMIT
    | {
        "ledger.expire_lots(integer,timestamp with time zone,bigint)",
        "ledger.dormancy_run(integer,bigint)",
        "ledger.dormancy_reactivate(bigint,jsonb)",
    },
    "exporter": READS | ERP,
    # the automation function posts as the money functions do (a member of their role),
    # and records its firings only through these two (db/schema/78_automation.sql)
    "operator": READS
    | RELAY
    | ERP
    | {"ledger.extend_chain(integer)", "ledger.chain_lag()", POSTING_RULE}
    # the balance checkpoints: advanced as the sweeper does, read as the reconciliation does
    | {ADVANCE_CHECKPOINTS, SYSTEM_BALANCE}
    # the dormancy policies (docs/dormancy.md)
    | {"ledger.dormancy_set_policy(text,text,interval,interval,text,text,jsonb)"}
    # the reconciliation's checkpoint, moved after a clean run (33_reconciliation_checkpoint.sql)
    | {"ledger.advance_reconciliation(xid8,bigint)"}
    # the lot expiry run by hand (python -m common.ops expire)
    | {"ledger.expire_lots(integer,timestamp with time zone,bigint)"},
}
# the daily reconciliation: checks each new posting against its rule and moves its
# checkpoint (db/schema/99_grants.sql, functions/ledger_reconcile)
MAY_EXECUTE["reconciler"] = {POSTING_RULE, "ledger.advance_reconciliation(xid8,bigint)"}
# the automation function posts as a poster does (it is in ledger_poster), and fires rules
MAY_EXECUTE["automation"] = MAY_EXECUTE["poster"] | {
    "ledger.automation_fire(bigint,text)",
    "ledger.automation_record(bigint,text,text,bigint,jsonb)",
}
# the actions function posts as a poster does (it is in ledger_poster), and no more
MAY_EXECUTE["messages"] = MAY_EXECUTE["poster"]


def routines(stack) -> list[str]:
    rows = sql(
        stack,
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace::regnamespace::text IN ('ledger', 'erp') AND p.prokind = 'f'"
        " AND p.prorettype <> 'trigger'::regtype ORDER BY 1",
    )
    return [row[0].replace(", ", ",") for row in rows]


def may_execute(stack, user: str) -> set[str]:
    rows = sql(
        stack,
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace::regnamespace::text IN ('ledger', 'erp')"
        " AND has_function_privilege(:u, p.oid, 'EXECUTE')",
        u=user,
    )
    return {row[0].replace(", ", ",") for row in rows}


@pytest.mark.parametrize("login", list(MAY_EXECUTE))
def test_each_login_may_execute_what_its_kind_uses_and_nothing_else(stack, login):
    assert MAY_EXECUTE[login] <= set(routines(stack)), "a routine the table names does not exist"
    assert may_execute(stack, LOGINS[login].user) == MAY_EXECUTE[login]


@pytest.mark.parametrize("login", list(LOGINS))
def test_no_login_may_write_a_table_or_own_anything(stack, login):
    """Not one INSERT, UPDATE, DELETE or TRUNCATE on any table of the ledger or the
    export, not on a single column; and nothing owned, so no ALTER and no trigger off."""
    user = LOGINS[login].user
    writable = sql(
        stack,
        "SELECT c.oid::regclass::text FROM pg_class c"
        " WHERE c.relnamespace::regnamespace::text IN ('ledger', 'erp', 'public') AND c.relkind IN ('r', 'p', 'v')"
        " AND (has_table_privilege(:u, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
        "      OR has_any_column_privilege(:u, c.oid, 'INSERT, UPDATE'))",
        u=user,
    )
    assert writable == []
    owned = sql(
        stack,
        "SELECT c.oid::regclass::text FROM pg_class c WHERE pg_has_role(:u, c.relowner, 'USAGE')"
        " AND c.relnamespace::regnamespace::text IN ('ledger', 'erp', 'public')",
        u=user,
    )
    assert owned == []


def refused(con, statement: str, **params) -> dict:
    with pytest.raises(DatabaseError) as error:
        con.run(statement, **params)
    return error.value.args[0]


@pytest.fixture
def connect(stack):
    opened = []

    def connect(login: str):
        opened.append(login_connection(stack, login))
        return opened[-1]

    yield connect
    for con in opened:
        con.close()


def post_sql(con, stack, wallet: int, amount: int = 5) -> None:
    funding = system_account(stack, "TST", "funding")
    con.run(
        "SELECT ledger.commit_posting(:k, 'h', 'topup', 'TST', :a, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]), p_external_ref => :ref)",
        k=key("roles"),
        ref=key("pay"),  # a payment's reference posts once
        a=amount,
        w=wallet,
        legs=[funding, wallet],
        amts=[-amount, amount],
    )


def test_the_money_role_posts_and_does_nothing_else(stack, connect):
    wallet = new_wallet(stack)
    poster = connect("poster")
    post_sql(poster, stack, wallet)
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=wallet)[0][0] == 5
    for statement in (
        "SELECT ledger.mark_published(ARRAY[1::bigint])",
        "SELECT ledger.mark_failed(1, 'x')",
        "SELECT ledger.create_asset('ROGUE', CAST(0 AS smallint))",
        f"SELECT ledger.update_wallet({wallet}, NULL, 1000000, NULL, NULL, '{{}}')",
        f"UPDATE ledger.wallets SET credit_limit = 1000000 WHERE id = {wallet}",
        f"UPDATE ledger.wallets SET status = 'frozen' WHERE id = {wallet}",
        "INSERT INTO ledger.assets (code, scale) VALUES ('ROGUE', 0)",
        "UPDATE ledger.outbox SET published_at = now()",
    ):
        assert refused(poster, statement)["C"] == "42501", statement


def test_the_relay_and_the_wallets_role_cannot_post(stack, connect):
    wallet = new_wallet(stack)
    for login in ("relay", "wallet_admin", "jobs", "exporter", "operator", "access_admin", "reconciler"):
        con = connect(login)
        with pytest.raises(DatabaseError) as error:
            post_sql(con, stack, wallet)
        assert error.value.args[0]["C"] == "42501", login
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=wallet)[0][0] == 0


def test_the_money_role_marks_only_the_events_its_relay_just_sent(stack, connect):
    """An event waiting in the sweeper's backlog can't be hidden by marking it published
    from a money function's role; one written a moment ago can (its own relay sent it)."""
    poster = connect("poster")
    fresh, stale = new_wallet(stack), new_wallet(stack)
    post_sql(poster, stack, fresh)
    post_sql(poster, stack, stale)
    fresh_tx, stale_tx = (
        sql(stack, "SELECT max(transaction_id) FROM ledger.entries WHERE wallet_id = :w", w=w)[0][0]
        for w in (fresh, stale)
    )
    sql(
        stack,
        "UPDATE ledger.outbox SET created_at = now() - interval '2 minutes' WHERE transaction_id = :t",
        t=stale_tx,
    )
    poster.run("SELECT ledger.mark_published_after_commit(CAST(:ids AS bigint[]))", ids=[fresh_tx, stale_tx])
    published = dict(
        sql(
            stack,
            "SELECT transaction_id, published_at IS NOT NULL FROM ledger.outbox WHERE transaction_id IN (:a, :b)",
            a=fresh_tx,
            b=stale_tx,
        )
    )
    assert published == {fresh_tx: True, stale_tx: False}
    connect("relay").run("SELECT ledger.mark_published(CAST(:ids AS bigint[]))", ids=[stale_tx])
    assert sql(stack, "SELECT published_at IS NOT NULL FROM ledger.outbox WHERE transaction_id = :t", t=stale_tx) == [
        [True]
    ]


def test_the_wallets_role_changes_wallets_only_through_the_procedures(stack, connect):
    wallet = new_wallet(stack)
    admin = connect("wallet_admin")
    for statement in (
        f"UPDATE ledger.wallets SET credit_limit = 1000000 WHERE id = {wallet}",
        f"UPDATE ledger.wallets SET spend_mode = 'shared' WHERE id = {wallet}",
        "INSERT INTO ledger.assets (code, scale) VALUES ('ROGUE', 0)",
        "SELECT ledger.mark_published(ARRAY[1::bigint])",
        "SELECT ledger.mark_published_after_commit(ARRAY[1::bigint])",
        "SELECT * FROM ledger.expire_lots(1)",
    ):
        assert refused(admin, statement)["C"] == "42501", statement


@pytest.mark.parametrize("login", list(LOGINS))
def test_no_login_can_switch_the_append_only_triggers_off(stack, connect, login):
    con = connect(login)
    for statement in (
        "ALTER TABLE ledger.transactions DISABLE TRIGGER transactions_append_only",
        "ALTER TABLE ledger.entries DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_append_only ON ledger.audit_log",
        "SET session_replication_role = replica",
    ):
        assert refused(con, statement)["C"] == "42501", (login, statement)


# What the incremental checks read (common/adapters/incremental_reconciliation.py), and
# not one table more: not the export's state, the outbox, the audit log or the chain.
RECONCILER_READS = {
    "ledger.assets",
    "ledger.wallets",
    "ledger.transactions",
    "ledger.entries",
    "ledger.spend_counters",
    "ledger.spend_charges",
    "ledger.lots",
    "ledger.lot_movements",
    "ledger.balance_horizon",
    "ledger.balance_checkpoints",
    "ledger.reconciliation_checkpoint",
    "ledger.reconciliation_asset_totals",
    "ledger.reconciliation_system_totals",
}


def test_the_daily_reconciliation_reads_what_its_checks_read_and_writes_only_through_its_function(stack, connect):
    user = LOGINS["reconciler"].user
    readable = sql(
        stack,
        "SELECT c.relnamespace::regnamespace::text || '.' || c.relname FROM pg_class c"
        " WHERE c.relnamespace::regnamespace::text IN ('ledger', 'erp', 'public') AND c.relkind IN ('r', 'p', 'v', 'm')"
        " AND (has_table_privilege(:u, c.oid, 'SELECT') OR has_any_column_privilege(:u, c.oid, 'SELECT'))",
        u=user,
    )
    assert {row[0] for row in readable} == RECONCILER_READS
    reconciler = connect("reconciler")
    for statement in (
        "UPDATE ledger.reconciliation_checkpoint SET transactions = transactions + 1",
        "UPDATE ledger.reconciliation_asset_totals SET customer_sum = 0",
        "INSERT INTO ledger.reconciliation_system_totals (wallet_id, asset_code, horizon_xact, horizon_id,"
        " balance, entry_count) VALUES (1, 'TST', '0', 0, 0, 0)",
        "UPDATE ledger.wallets SET balance = 0",
        "SELECT ledger.advance_balance_checkpoints(10)",
        "SELECT count(*) FROM ledger.audit_log",
        "SELECT count(*) FROM erp.batches",
    ):
        assert refused(reconciler, statement)["C"] == "42501", statement
