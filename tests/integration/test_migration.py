"""Bulk balance migrations through `python -m common.migrate`, run as the operator runs
it (a subprocess on the test stack): restartable after SIGKILL, dry runs that write
nothing, rejected rows fed back, rollbacks (docs/migrations.md)."""

import csv
import json
import os
import signal
import subprocess
import sys
import uuid

from emulators import database as stack_database
from emulators.stack import REPO
from tests.support import new_wallet, sql

ASSET = "TST"


def migrate(stack, *args, background=False):
    command = [sys.executable, "-m", "common.migrate", *map(str, args)]
    env = {**os.environ, **stack.in_process_env()}
    if background:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def write_csv(path, rows):
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, ["row_id", "owner", "asset", "amount", "model", "parent", "lot_expires_at"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def opening_rows(count, prefix):
    return [
        {"row_id": f"r{i}", "owner": f"{prefix}-{i}", "asset": ASSET, "amount": 100 + i, "model": "personal"}
        for i in range(count)
    ]


def postings_of(stack, migration_id):
    """row id -> (amount, how many postings) of the migration's opening balances."""
    rows = sql(
        stack,
        "SELECT metadata ->> 'migration_row', sum(amount), count(*) FROM ledger.transactions"
        " WHERE metadata ->> 'migration_id' = :m AND action = 'opening_balance' GROUP BY 1",
        m=migration_id,
    )
    return {row_id: (int(amount), count) for row_id, amount, count in rows}


def wallet_balances(stack, owners):
    rows = sql(
        stack,
        "SELECT owner_id, count(*), sum(balance) FROM ledger.wallets WHERE owner_id = ANY (CAST(:o AS text[]))"
        " GROUP BY owner_id",
        o="{" + ",".join(owners) + "}",
    )
    return {owner: (count, int(total)) for owner, count, total in rows}


def test_an_import_killed_midway_and_run_again_posts_each_row_once_and_reconciles(stack, tmp_path):
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    rows = opening_rows(1200, prefix)
    source = write_csv(tmp_path / "legacy.csv", rows)

    running = migrate(stack, "import", source, "--migration-id", migration_id, background=True)
    while running.poll() is None and not postings_of(stack, migration_id):
        pass
    running.send_signal(signal.SIGKILL)
    running.wait()
    posted_when_killed = len(postings_of(stack, migration_id))
    assert 0 < posted_when_killed < len(rows), "killed mid-way: some rows posted, not all"

    result = migrate(stack, "import", source, "--migration-id", migration_id)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["unreconciled"] == [] and report["rejected"] == 0
    assert (
        report["source"]
        == report["ledger"]
        == [{"asset": ASSET, "model": "personal", "amount": sum(r["amount"] for r in rows), "rows": len(rows)}]
    )
    assert postings_of(stack, migration_id) == {r["row_id"]: (r["amount"], 1) for r in rows}
    owners = [r["owner"] for r in rows]
    assert wallet_balances(stack, owners) == {r["owner"]: (1, r["amount"]) for r in rows}  # one wallet each

    again = migrate(stack, "import", source, "--migration-id", migration_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["posted_now"] == 0
    assert postings_of(stack, migration_id) == {r["row_id"]: (r["amount"], 1) for r in rows}


def test_a_dry_run_writes_nothing(stack, tmp_path):
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    rows = opening_rows(3, prefix) + [{"row_id": "bad", "owner": f"{prefix}-x", "asset": "NOPE", "amount": 5}]
    source = write_csv(tmp_path / "legacy.csv", rows)
    before = sql(stack, "SELECT (SELECT count(*) FROM ledger.transactions), (SELECT count(*) FROM ledger.wallets)")

    result = migrate(stack, "import", source, "--migration-id", migration_id, "--dry-run")

    assert result.returncode == 1, result.stdout + result.stderr  # a row would be rejected
    report = json.loads(result.stdout)
    assert report["dry_run"] and report["rejected"] == 1
    assert report["would_post"] == [{"asset": ASSET, "model": "personal", "amount": 100 + 101 + 102, "rows": 3}]
    after = sql(stack, "SELECT (SELECT count(*) FROM ledger.transactions), (SELECT count(*) FROM ledger.wallets)")
    assert after == before


def test_rejected_rows_fixed_and_fed_back_complete_the_migration(stack, tmp_path):
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    rows = opening_rows(3, prefix)
    broken = [dict(rows[1], amount="1.5"), dict(rows[2], asset="NOPE")]
    source = write_csv(tmp_path / "legacy.csv", [rows[0], *broken])

    first = migrate(stack, "import", source, "--migration-id", migration_id)
    assert first.returncode == 1, first.stdout + first.stderr
    report = json.loads(first.stdout)
    assert report["rejected"] == 2 and not report["ok"] and report["posted_now"] == 1
    with open(report["rejected_file"], newline="") as rejected_file:
        rejected = list(csv.DictReader(rejected_file))
    assert [r["row_id"] for r in rejected] == ["r1", "r2"] and all(r["reason"] for r in rejected)

    for row in rejected:  # the operator fixes the rows in the file it was given
        row.update(amount=str(rows[int(row["row_id"][1:])]["amount"]), asset=ASSET)
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", newline="") as out:
        writer = csv.DictWriter(out, list(rejected[0]))
        writer.writeheader()
        writer.writerows(rejected)

    second = migrate(stack, "import", fixed, "--migration-id", migration_id)
    assert second.returncode == 0, second.stdout + second.stderr
    assert postings_of(stack, migration_id) == {r["row_id"]: (r["amount"], 1) for r in rows}


def test_a_rollback_leaves_every_wallet_as_before(stack, tmp_path):
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    existing = new_wallet(stack, funded=50, owner_id=f"{prefix}-0")  # not the migration's: untouched
    rows = opening_rows(70, prefix)  # more than one batch
    in_future = {"lot_expires_at": "2999-01-01T00:00:00+00:00"}
    rows[5].update(in_future)
    source = write_csv(tmp_path / "legacy.csv", rows)
    imported = migrate(stack, "import", source, "--migration-id", migration_id)
    assert imported.returncode == 0, imported.stdout + imported.stderr

    result = migrate(stack, "rollback", "--migration-id", migration_id)

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"voided_now": 70, "not_voided": [], "failures": [], "ok": True}
    balances = wallet_balances(stack, [r["owner"] for r in rows])
    assert balances == {f"{prefix}-0": (2, 50), **{r["owner"]: (1, 0) for r in rows[1:]}}
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=existing) == [[50]]
    assert sql(
        stack,
        "SELECT count(*) FROM ledger.lots l JOIN ledger.wallets w ON w.id = l.wallet_id"
        " WHERE w.metadata ->> 'migration_id' = :m AND l.remaining > 0",
        m=migration_id,
    ) == [[0]]
    again = migrate(stack, "rollback", "--migration-id", migration_id)
    assert json.loads(again.stdout)["voided_now"] == 0 and again.returncode == 0


def test_a_second_run_of_one_migration_at_once_posts_nothing_and_says_so(stack, tmp_path):
    """Two runs of one migration id at once would each make the wallets the other had
    not made yet: the second stops before posting, and a run after the first posts."""
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    rows = opening_rows(3, prefix)
    source = write_csv(tmp_path / "legacy.csv", rows)
    first_run = stack_database.owner_connection(stack.owner_dsn())  # what a running import holds
    try:
        first_run.run("SELECT pg_advisory_lock(4243, hashtext(:m))", m=migration_id)
        second = migrate(stack, "import", source, "--migration-id", migration_id)
        assert second.returncode == 2 and "in progress" in second.stderr, second.stdout + second.stderr
        assert postings_of(stack, migration_id) == {} and wallet_balances(stack, [r["owner"] for r in rows]) == {}
    finally:
        first_run.close()

    after = migrate(stack, "import", source, "--migration-id", migration_id)
    assert after.returncode == 0, after.stdout + after.stderr
    assert postings_of(stack, migration_id) == {r["row_id"]: (r["amount"], 1) for r in rows}


def test_a_wallet_refused_in_a_batch_rejects_only_its_rows(stack, tmp_path):
    """A batch's new wallets are made in one call; when the database refuses one (a
    parent frozen since the pre-flight read it), the others are still made and post."""
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    frozen_parent = sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code, model, status) VALUES (:o, :a, 'enterprise', 'frozen')"
        " RETURNING id",
        o=f"{prefix}-parent",
        a=ASSET,
    )[0][0]
    rows = opening_rows(3, prefix)
    rows[1].update(model="enterprise", parent=frozen_parent)
    source = write_csv(tmp_path / "legacy.csv", rows)

    result = migrate(stack, "import", source, "--migration-id", migration_id)

    assert result.returncode == 1, result.stdout + result.stderr
    with open(json.loads(result.stdout)["rejected_file"], newline="") as rejected_file:
        rejected = list(csv.DictReader(rejected_file))
    assert [r["row_id"] for r in rejected] == ["r1"] and "parent_not_active" in rejected[0]["reason"]
    assert postings_of(stack, migration_id) == {r["row_id"]: (r["amount"], 1) for r in (rows[0], rows[2])}


def test_a_rollback_voids_only_what_the_migration_posted_under_its_keys(stack, tmp_path):
    """A posting whose metadata names the migration (the edges refuse that to callers;
    a login that posts directly still could) is not the migration's to void."""
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    imported = migrate(
        stack, "import", write_csv(tmp_path / "legacy.csv", opening_rows(2, prefix)), "--migration-id", migration_id
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    bystander = new_wallet(stack, funded=30)
    funding = sql(
        stack,
        "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'funding' AND asset_code = :a",
        a=ASSET,
    )[0][0]
    sql(
        stack,
        "SELECT ledger.commit_posting(:k, 'h', 'topup', :a, 7, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]), :k, p_metadata => CAST(:m AS jsonb))",
        k=f"planted-{prefix}",
        a=ASSET,
        w=bystander,
        legs=[funding, bystander],
        amts=[-7, 7],
        m=json.dumps({"migration_id": migration_id, "migration_row": "r0"}),
    )

    result = migrate(stack, "rollback", "--migration-id", migration_id)

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["voided_now"] == 2
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=bystander) == [[37]]


def test_one_owner_under_two_parents_gets_a_wallet_under_each(stack, tmp_path):
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    parents = [
        sql(
            stack,
            "INSERT INTO ledger.wallets (owner_id, asset_code, model) VALUES (:o, :a, 'enterprise') RETURNING id",
            o=f"{prefix}-root{i}",
            a=ASSET,
        )[0][0]
        for i in range(2)
    ]
    rows = [
        {
            "row_id": f"r{i}",
            "owner": f"{prefix}-member",
            "asset": ASSET,
            "amount": 10 + i,
            "model": "enterprise",
            "parent": parent,
        }
        for i, parent in enumerate(parents)
    ]

    result = migrate(stack, "import", write_csv(tmp_path / "legacy.csv", rows), "--migration-id", migration_id)

    assert result.returncode == 0, result.stdout + result.stderr
    placed = sql(
        stack,
        "SELECT parent_id, balance FROM ledger.wallets WHERE owner_id = :o ORDER BY parent_id",
        o=f"{prefix}-member",
    )
    assert placed == [[parents[0], 10], [parents[1], 11]]


def test_a_file_changed_under_posted_row_ids_posts_nothing(stack, tmp_path):
    """Rows numbered by position: a row inserted at the top shifts every later row onto
    another's id, and the last one onto a new id, which would post its money twice.
    The run stops before posting anything and names the changed rows."""
    migration_id, prefix = f"m-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex[:8]
    rows = [{k: v for k, v in row.items() if k != "row_id"} for row in opening_rows(3, prefix)]
    first = migrate(stack, "import", write_csv(tmp_path / "legacy.csv", rows), "--migration-id", migration_id)
    assert first.returncode == 0, first.stdout + first.stderr
    inserted = {"owner": f"{prefix}-new", "asset": ASSET, "amount": 5, "model": "personal"}

    second = migrate(
        stack, "import", write_csv(tmp_path / "edited.csv", [inserted, *rows]), "--migration-id", migration_id
    )

    assert second.returncode == 1, second.stdout + second.stderr
    report = json.loads(second.stdout)
    assert report["changed"] == 3 and report["posted_now"] == 0
    assert postings_of(stack, migration_id) == {str(i + 1): (row["amount"], 1) for i, row in enumerate(rows)}
