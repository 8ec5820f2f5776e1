"""A migration's moves between wallets already in the ledger, through
`python -m common.migrate move` as the operator runs it (docs/migrations.md, "Moves"):
"all" posts once however often it runs, lots keep their expiry, a rollback restores
both wallets, and only the migration posts a migration_transfer."""

import csv
import json
import uuid

import pytest
from pg8000.exceptions import DatabaseError

from tests.integration.test_migration import migrate
from tests.support import balance, key, new_wallet, sql, system_account

IN_A_YEAR = "2999-01-01T00:00:00+00:00"


def plan(path, rows):
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, ["row_id", "source_wallet", "target_wallet", "amount"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def enterprise_root(stack):
    return sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code, model) VALUES (:o, 'TST', 'enterprise') RETURNING id",
        o=key("owner"),
    )[0][0]


def with_lot(stack, wallet, amount, expires_at):
    funding = system_account(stack, "TST", "funding")
    sql(
        stack,
        "SELECT ledger.commit_posting(:k, 'h', 'topup', 'TST', :a, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]), p_lot_expires_at => CAST(:x AS timestamptz))",
        k=key(),
        a=amount,
        w=wallet,
        legs=[funding, wallet],
        amts=[-amount, amount],
        x=expires_at,
    )


def lots(stack, wallet):
    """expiry -> remaining, of the wallet's lots still holding credit."""
    rows = sql(
        stack,
        "SELECT ledger.iso_utc(expires_at), sum(remaining) FROM ledger.lots WHERE wallet_id = :w AND remaining > 0"
        " GROUP BY 1",
        w=wallet,
    )
    return {at: int(remaining) for at, remaining in rows}


def moves(stack, migration_id):
    return sql(
        stack,
        "SELECT metadata ->> 'migration_row', amount, metadata ->> 'move_amount' FROM ledger.transactions"
        " WHERE metadata ->> 'migration_id' = :m AND action = 'migration_transfer' ORDER BY id",
        m=migration_id,
    )


def test_a_move_of_all_across_trees_run_twice_moves_once(stack, tmp_path):
    migration_id = f"mv-{uuid.uuid4().hex[:12]}"
    personal, pool = new_wallet(stack, funded=500), enterprise_root(stack)  # a plain transfer: outside_tree
    source = plan(
        tmp_path / "plan.csv", [{"row_id": "1", "source_wallet": personal, "target_wallet": pool, "amount": "all"}]
    )

    first = migrate(stack, "move", source, "--migration-id", migration_id)

    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    totals = [{"asset": "TST", "model": "personal->enterprise", "amount": 500, "rows": 1}]
    assert report["ok"] and report["source"] == report["ledger"] == totals and report["posted_now"] == 1
    assert (balance(stack, personal), balance(stack, pool)) == (0, 500)

    with_lot(stack, personal, 70, IN_A_YEAR)  # money arriving later is not the first run's "all"
    again = migrate(stack, "move", source, "--migration-id", migration_id)

    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["posted_now"] == 0
    assert (balance(stack, personal), balance(stack, pool)) == (70, 500)
    assert moves(stack, migration_id) == [["1", 500, "all"]]


def test_a_moved_lot_keeps_its_expiry_and_a_rollback_restores_both_wallets(stack, tmp_path):
    migration_id = f"mv-{uuid.uuid4().hex[:12]}"
    source_wallet, target = new_wallet(stack, funded=40), new_wallet(stack, funded=5)
    with_lot(stack, source_wallet, 100, IN_A_YEAR)
    before = {w: (balance(stack, w), lots(stack, w)) for w in (source_wallet, target)}
    rows = [{"row_id": "a", "source_wallet": source_wallet, "target_wallet": target, "amount": 120}]

    moved = migrate(stack, "move", plan(tmp_path / "plan.csv", rows), "--migration-id", migration_id)

    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert (balance(stack, source_wallet), balance(stack, target)) == (20, 125)
    assert lots(stack, target) == {"2999-01-01T00:00:00.000000Z": 100}  # the lot's credit moved first, expiry kept

    rolled_back = migrate(stack, "rollback", "--migration-id", migration_id)

    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert {w: (balance(stack, w), lots(stack, w)) for w in (source_wallet, target)} == before


def test_the_preflight_rejects_what_cannot_move_and_a_dry_run_writes_nothing(stack, tmp_path):
    migration_id = f"mv-{uuid.uuid4().hex[:12]}"
    one, other, frozen = new_wallet(stack, funded=30), new_wallet(stack), new_wallet(stack, funded=9)
    sql(stack, "UPDATE ledger.wallets SET status = 'frozen' WHERE id = :w", w=frozen)
    funding = system_account(stack, "TST", "funding")
    rows = [
        {"row_id": "ok", "source_wallet": one, "target_wallet": other, "amount": 10},
        {"row_id": "ok", "source_wallet": one, "target_wallet": other, "amount": 5},  # repeated row id
        {"row_id": "self", "source_wallet": one, "target_wallet": one, "amount": 5},
        {"row_id": "gone", "source_wallet": one, "target_wallet": 10**12, "amount": 5},
        {"row_id": "system", "source_wallet": funding, "target_wallet": one, "amount": 5},
        {"row_id": "frozen", "source_wallet": frozen, "target_wallet": one, "amount": "all"},
        {"row_id": "half", "source_wallet": one, "target_wallet": other, "amount": "1.5"},
    ]
    path = plan(tmp_path / "plan.csv", rows)
    count = "SELECT count(*) FROM ledger.transactions"
    before = sql(stack, count)

    dry = migrate(stack, "move", path, "--migration-id", migration_id, "--dry-run")

    assert dry.returncode == 1, dry.stdout + dry.stderr
    report = json.loads(dry.stdout)
    assert report["would_move"] == [{"asset": "TST", "model": "personal->personal", "amount": 10, "rows": 1}]
    assert report["rejected"] == 6 and sql(stack, count) == before
    with open(report["rejected_file"], newline="") as rejected_file:
        reasons = {r["row_id"]: r["reason"] for r in csv.DictReader(rejected_file)}
    assert set(reasons) == {"ok", "self", "gone", "system", "frozen", "half"}
    assert "frozen" in reasons["frozen"] and "system account" in reasons["system"]


def test_only_a_migration_key_posts_a_migration_transfer_and_every_guard_holds(stack):
    """Around Python: the database itself keeps the cross-tree move to the migration."""
    payer, payee = new_wallet(stack, funded=20), new_wallet(stack)

    def move(idempotency_key, amount=5):
        return sql(
            stack,
            "SELECT ledger.commit_posting(:k, 'h', 'migration_transfer', 'TST', :a, :p, :q,"
            " CAST(:legs AS bigint[]), CAST(:amts AS bigint[]))",
            k=idempotency_key,
            a=amount,
            p=payer,
            q=payee,
            legs=[payer, payee],
            amts=[-amount, amount],
        )

    with pytest.raises(DatabaseError) as client_key:
        move(key("client"))
    assert "migration_transfer posts only under a migration" in str(client_key.value)
    with pytest.raises(DatabaseError) as overspent:
        move(f"migration:{uuid.uuid4().hex}:1", amount=21)
    assert "insufficient_funds" in str(overspent.value)
    sql(stack, "UPDATE ledger.wallets SET status = 'frozen' WHERE id = :w", w=payee)
    with pytest.raises(DatabaseError) as frozen:
        move(f"migration:{uuid.uuid4().hex}:1")
    assert "wallet_frozen" in str(frozen.value)
    assert balance(stack, payer) == 20
