"""`python -m common.migrate move PLAN`: a migration's moves between wallets already in
the ledger (docs/migrations.md, "Moves"). The rules are common/migration_moves.py;
this is their I/O: the pre-flight against the ledger, the batches through
ledger.commit_postings() (as an import's), and the report.

Each row posts a `migration_transfer` under `migration:<id>:<row id>`, so a restart or
a second run posts nothing twice; `rollback --migration-id` voids moves like any other
posting of the migration, and the lots go back with their expiry.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from common import bootstrap
from common.errors import DependencyUnavailable
from common.migrate import BATCH, _actor, _finish, _params, _progress, _reason, _write_rejected
from common.migration import (
    Rejected,
    SourceError,
    Totals,
    check_migration_id,
    first_of_each_row_id,
    posting_key,
    read_rows,
)
from common.migration_moves import (
    MoveRow,
    WalletFacts,
    models,
    parse_move,
    rejected_moves_csv,
    resolve,
    unfit,
)


def run(file: Path, migration_id: str, dry_run: bool, rejected: Path | None) -> None:
    try:
        check_migration_id(migration_id)
        read = [parse_move(raw) for raw in read_rows(file.read_text(), file.name)]
    except SourceError as error:
        raise click.ClickException(str(error)) from error
    rejected_path = rejected or file.with_name(file.name + ".rejected.csv")
    from common.adapters.move_store import MoveStore

    store = MoveStore(bootstrap.pool())
    try:
        valid, refused = first_of_each_row_id(read)
        wallets = store.wallet_facts([w for row in valid for w in (row.source_wallet, row.target_wallet)])
        fit: list[MoveRow] = []
        for row in valid:
            reason = unfit(row, wallets)
            if reason is None:
                fit.append(row)
            else:
                refused.append(Rejected(row.source(), reason))
        posted_before = store.moves_of(migration_id)
        to_post = [row for row in fit if row.row_id not in posted_before]
        if dry_run:
            would, empty = Totals(), []
            for row, amount in resolve(to_post, {i: f.spendable for i, f in wallets.items()}):
                if amount == 0:
                    empty.append(row.row_id)
                else:
                    would.add(wallets[row.source_wallet].asset, models(row, wallets), amount)
            _write(rejected_path, refused)
            report = {"dry_run": True, "would_move": would.as_list(), "empty": empty}
            report.update(already_posted=len(fit) - len(to_post), rejected=len(refused))
            _finish({**report, "rejected_file": str(rejected_path)}, not refused)
        failed, empty = _post(migration_id, to_post, store)
        refused += failed
        failed_ids = {r.source.get("row_id") for r in refused}
        report = _reconcile(migration_id, [row for row in fit if row.row_id not in failed_ids], wallets, store)
    except DependencyUnavailable as error:
        click.echo(f"{error.code}: {error.message}; run it again to continue", err=True)
        sys.exit(2)
    _write(rejected_path, refused)
    report.update(rows=len(read), posted_now=len(to_post) - len(failed) - len(empty), rejected=len(refused))
    report["empty"] = empty
    report["rejected_file"] = str(rejected_path) if refused else None
    _finish(report, not refused and not report["unreconciled"])


def _post(migration_id: str, rows: list[MoveRow], store: Any) -> tuple[list[Rejected], list[str]]:
    """Post the moves, a batch at a time; "all" is resolved against the balances read
    just before its batch. Returns the rows refused and those with nothing to move."""
    ledger, actor = bootstrap.ledger(), _actor(migration_id)
    rejected: list[Rejected] = []
    empty: list[str] = []
    pacer = bootstrap.pacer()  # rests after each batch (docs/background-jobs.md)
    with _progress("move", len(rows)) as advance:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            with pacer.batch():
                facts = store.wallet_facts([w for row in chunk for w in (row.source_wallet, row.target_wallet)])
                batch: list[tuple[MoveRow, dict[str, Any]]] = []
                for row, amount in resolve(chunk, {i: f.spendable for i, f in facts.items()}):
                    if amount == 0:
                        empty.append(row.row_id)
                        continue
                    batch.append((row, _move_params(migration_id, row, amount, facts[row.source_wallet], actor)))
                results = ledger.post_batch([params for _, params in batch])[0] if batch else []
            if batch:
                for (row, _), result in zip(batch, results, strict=True):
                    if isinstance(result, DependencyUnavailable):
                        raise result
                    if isinstance(result, Exception):
                        rejected.append(Rejected(row.source(), _reason(result)))
            advance(len(chunk))
    return rejected, empty


def _move_params(
    migration_id: str, row: MoveRow, amount: int, source: WalletFacts, actor: dict[str, Any]
) -> dict[str, Any]:
    return _params(
        posting_key(migration_id, row.row_id),
        row.request_hash(),
        actor,
        action="migration_transfer",
        asset=source.asset,
        amount=amount,
        wallet_id=row.source_wallet,
        counterparty_wallet_id=row.target_wallet,
        leg_wallets=[row.source_wallet, row.target_wallet],
        leg_amounts=[-amount, amount],
        metadata={"migration_id": migration_id, "migration_row": row.row_id, "move_amount": row.asked},
    )


def _reconcile(migration_id: str, rows: list[MoveRow], wallets: dict[int, WalletFacts], store: Any) -> dict[str, Any]:
    """The plan's rows against their moves in the ledger: totals per asset and
    (source model -> target model), and every row whose move is missing or differs. An
    "all" row's source amount is what it resolved to; a row with nothing to move is no
    difference."""
    posted = {row_id: p for row_id, p in store.moves_of(migration_id).items() if not p["voided"]}
    source_totals, ledger_totals = Totals(), Totals()
    unreconciled: list[dict[str, Any]] = []
    for row in rows:
        posting = posted.get(row.row_id)
        asset, pair = wallets[row.source_wallet].asset, models(row, wallets)
        if posting is None:
            if row.amount is not None:
                source_totals.add(asset, pair, row.amount)
                unreconciled.append({"row_id": row.row_id, "reason": "not posted"})
            continue
        source_totals.add(asset, pair, posting["amount"] if row.amount is None else row.amount)
        ledger_totals.add(posting["asset"], pair, posting["amount"])
        as_posted = (posting["source_wallet"], posting["target_wallet"], posting["move_amount"])
        if as_posted != (row.source_wallet, row.target_wallet, row.asked) or (
            row.amount is not None and posting["amount"] != row.amount
        ):
            unreconciled.append({"row_id": row.row_id, "reason": "posted with other content", "posted": posting})
    return {
        "source": source_totals.as_list(),
        "ledger": ledger_totals.as_list(),
        "unreconciled": unreconciled,
        "migration_moves": len(posted),
    }


def _write(path: Path, rejected: list[Rejected]) -> None:
    _write_rejected(path, rejected, rejected_moves_csv)
