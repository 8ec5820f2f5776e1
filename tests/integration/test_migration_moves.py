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
    account = system_account(stack, "TST", "migration")
    with pytest.raises(DatabaseError) as minted:  # money from migration equity, under a caller's key
        sql(
            stack,
            "SELECT ledger.commit_posting(:k, 'h', 'opening_balance', 'TST', 5, :w, NULL,"
            " CAST(:legs AS bigint[]), CAST(:amts AS bigint[]))",
            k=key("client"),
            w=payee,
            legs=[account, payee],
            amts=[-5, 5],
        )
    assert "posts only under a migration" in str(minted.value)
    with pytest.raises(DatabaseError) as overspent:
        move(f"migration:{uuid.uuid4().hex}:1", amount=21)
    assert "insufficient_funds" in str(overspent.value)
    sql(stack, "UPDATE ledger.wallets SET status = 'frozen' WHERE id = :w", w=payee)
    with pytest.raises(DatabaseError) as frozen:
        move(f"migration:{uuid.uuid4().hex}:1")
    assert "wallet_frozen" in str(frozen.value)
    assert balance(stack, payer) == 20 and balance(stack, payee) == 0


def test_a_move_killed_midway_and_run_again_moves_each_row_once(stack, tmp_path):
    """SIGKILL while the plan posts, then the same command again: every row moved
    once, "all" included (a re-run replays a posted row, never resolves it again)."""
    import signal

    from tests.integration.test_migration import migrate as run

    migration_id, count, funded = f"mv-{uuid.uuid4().hex[:12]}", 600, 100
    funding = system_account(stack, "TST", "funding")
    sources = [
        row[0]
        for row in sql(
            stack,
            "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT :o || g, 'TST' FROM generate_series(1, :n) g"
            " ORDER BY g RETURNING id",
            o=key("mover"),
            n=count,
        )
    ]
    sql(
        stack,
        "SELECT ledger.commit_posting(:k || w, 'h', 'topup', 'TST', :a, w, NULL, ARRAY[:f, w],"
        " ARRAY[-CAST(:a AS bigint), CAST(:a AS bigint)], :k || w) FROM unnest(CAST(:ws AS bigint[])) AS w",
        k=key("fund"),
        a=funded,
        f=funding,
        ws=sources,
    )
    target = new_wallet(stack)
    rows = [
        {"row_id": f"m{i}", "source_wallet": w, "target_wallet": target, "amount": "all"} for i, w in enumerate(sources)
    ]
    source = plan(tmp_path / "plan.csv", rows)

    running = run(stack, "move", source, "--migration-id", migration_id, background=True)
    while running.poll() is None and not moves(stack, migration_id):
        pass
    running.send_signal(signal.SIGKILL)
    running.wait()
    assert 0 < len(moves(stack, migration_id)) < count, "killed mid-way: some rows moved, not all"

    again = run(stack, "move", source, "--migration-id", migration_id)

    assert again.returncode == 0, again.stdout + again.stderr
    posted = moves(stack, migration_id)
    assert sorted(row_id for row_id, _, _ in posted) == sorted(r["row_id"] for r in rows)  # each once
    assert {int(amount) for _, amount, _ in posted} == {funded}
    assert balance(stack, target) == count * funded
    assert sql(
        stack, "SELECT count(*) FROM ledger.wallets WHERE id = ANY (CAST(:ws AS bigint[])) AND balance <> 0", ws=sources
    ) == [[0]]


def test_a_rollback_of_chained_moves_finishes_in_one_run(stack, tmp_path):
    """r1 moves A to B, r2 moves all of B on to C: voiding r1 first would find B empty;
    a rollback voids newest first."""
    migration_id = f"mv-{uuid.uuid4().hex[:12]}"
    a, b, c = new_wallet(stack, funded=100), new_wallet(stack), new_wallet(stack)
    rows = [
        {"row_id": "1", "source_wallet": a, "target_wallet": b, "amount": "100"},
        {"row_id": "2", "source_wallet": b, "target_wallet": c, "amount": "all"},
    ]
    for row in rows:  # one plan each, so the second resolves after the first posted
        moved = migrate(
            stack, "move", plan(tmp_path / f"plan{row['row_id']}.csv", [row]), "--migration-id", migration_id
        )
        assert moved.returncode == 0, moved.stdout + moved.stderr
    assert [balance(stack, w) for w in (a, b, c)] == [0, 0, 100]

    result = migrate(stack, "rollback", "--migration-id", migration_id)

    assert result.returncode == 0, result.stdout + result.stderr
    assert [balance(stack, w) for w in (a, b, c)] == [100, 0, 0]
