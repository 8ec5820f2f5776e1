"""`python -m common.migrate`: bulk balance migrations (docs/migrations.md).

import FILE --migration-id ID [--dry-run]   opening balances from a legacy ledger's CSV or JSONL
move PLAN --migration-id ID [--dry-run]     moves between existing wallets (common/migrate_moves.py)
rollback --migration-id ID                  void every posting of a migration

Every posting goes through ledger.commit_postings() in batches (the money path with all
its guards; a batch holds its wallets for one call only). A row posts once per
(migration id, row id), so a run stopped by Ctrl-C, SIGKILL or a lost database is
continued by running it again. The report (JSON on stdout) sets the source's totals
against the ledger's per asset and model; rejected rows go to a CSV that can be fixed
and imported again. Exit 0 when everything reconciles, 1 when not, 2 when the database
could not be reached (run it again to continue).

It logs in as a login in ledger_poster and ledger_wallet_admin (locally: the stack's
in-process login), the rights the money and wallets functions have, no more.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TimeRemainingColumn
from rich.text import Text

from common import bootstrap
from common.errors import DependencyUnavailable, LedgerError
from common.ledger.commands import CreateWallet
from common.migration import (
    OpeningRow,
    Rejected,
    SourceError,
    Totals,
    check_migration_id,
    first_of_each_row_id,
    parse_opening,
    posting_key,
    read_rows,
    rejected_csv,
    void_key,
)

WalletKey = tuple[str, str, str, int | None]  # owner, asset, model, parent: one wallet each per migration
BATCH = 60  # ledger_store.MAX_POSTINGS_PER_CALL: past 64 subtransactions Postgres' snapshots overflow
# Lanes posting at once: the database does the work (commit_posting's guards), so a few
# calls in flight keep its cores busy while each waits for its commit; more only queue.
WORKERS = 3
LOOKUP = 5_000  # source rows looked up by key in one query (already posted? reconciled?)


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} rows/s" if task.speed else "- rows/s")


@contextmanager
def _progress(label: str, total: int) -> Iterator[Any]:
    columns = (BarColumn(), MofNCompleteColumn(), _RowsPerSecond(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def _store() -> Any:
    from common.adapters.migration_store import MigrationStore

    return MigrationStore(bootstrap.pool())


def _actor(migration_id: str) -> dict[str, Any]:
    return {"principal": "common.migrate", "migration_id": migration_id}


def _params(key: str, request_hash: str, actor: dict[str, Any], **posting: Any) -> dict[str, Any]:
    """A posting as ledger.commit_postings() takes it (ledger_store.posting_params)."""
    return {
        "tenant": "",
        "actor": actor,
        "key": key,
        "request_hash": request_hash,
        "counterparty_wallet_id": None,
        "external_ref": None,
        "usage_id": None,
        "product": None,
        "description": None,
        "voids_transaction_id": None,
        "lot_expires_at": None,
        **posting,
    }


def _preflight(rows: list[OpeningRow], store: Any) -> tuple[list[OpeningRow], list[Rejected]]:
    """Assets known (with their migration account), parents that exist and fit."""
    assets = store.assets()
    accounts = {asset: store.migration_account(asset) for asset in {r.asset for r in rows} & assets}
    parents = store.parents(sorted({r.parent for r in rows if r.parent is not None}))
    keep: list[OpeningRow] = []
    rejected: list[Rejected] = []
    for row in rows:
        parent = parents.get(row.parent) if row.parent is not None else None
        if row.asset not in assets:
            rejected.append(Rejected(row.source(), f"unknown asset {row.asset}"))
        elif accounts.get(row.asset) is None:
            rejected.append(Rejected(row.source(), f"asset {row.asset} has no migration account"))
        elif row.parent is not None and parent is None:
            rejected.append(Rejected(row.source(), f"parent wallet {row.parent} does not exist"))
        elif parent is not None and parent != (row.asset, row.model, "customer"):
            rejected.append(Rejected(row.source(), "a member's parent has the member's asset and model"))
        else:
            keep.append(row)
    return keep, rejected


def _post_rows(migration_id: str, rows: list[OpeningRow], store: Any, workers: int) -> list[Rejected]:
    """Post each row's opening balance, creating the wallet it names once per migration.

    The rows go to `workers` lanes by their wallet, so a wallet's rows stay in order in
    one lane and lanes never wait on each other's wallets; each lane posts one batch at
    a time (one call making its new wallets, one posting it). Ctrl-C lets each lane
    finish the batch it is in; a database lost stops them all (run again to continue)."""
    ledger, admin, actor = bootstrap.ledger(), bootstrap.ledger_admin(), _actor(migration_id)
    wallets = store.wallets_of(migration_id)
    accounts = {asset: store.migration_account(asset) for asset in {r.asset for r in rows}}
    lanes: list[list[OpeningRow]] = [[] for _ in range(workers)]
    for row in rows:
        lanes[zlib.crc32(f"{row.owner}\x00{row.asset}\x00{row.model}".encode()) % workers].append(row)
    rejected: list[Rejected] = []
    lock, stop = threading.Lock(), threading.Event()

    def lane(rows: list[OpeningRow], advance: Any) -> None:
        pacer = bootstrap.pacer()  # each lane paces its own batches (docs/background-jobs.md)
        start = 0
        while start < len(rows):
            if stop.is_set():
                return
            chunk = rows[start : start + pacer.size(BATCH)]
            start += len(chunk)
            with pacer.batch():
                refused = _post_batch(migration_id, chunk, wallets, accounts, ledger, admin, actor)
            pacer.counted(len(chunk))
            with lock:
                rejected.extend(refused)
                advance(len(chunk))

    with _progress("import", len(rows)) as advance, ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(lane, rows, advance) for rows in lanes if rows]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            stop.set()
            raise
    return rejected


def _post_batch(
    migration_id: str,
    chunk: list[OpeningRow],
    wallets: dict[WalletKey, int],
    accounts: dict[str, int],
    ledger: Any,
    admin: Any,
    actor: dict[str, Any],
) -> list[Rejected]:
    rejected: list[Rejected] = []
    refused_owners = _create_wallets(migration_id, chunk, wallets, admin, actor)
    batch: list[tuple[OpeningRow, dict[str, Any]]] = []
    for row in chunk:
        owner = _wallet_key(row)
        if owner in refused_owners:
            rejected.append(Rejected(row.source(), refused_owners[owner]))
            continue
        amount, account, wallet = row.amount, accounts[row.asset], wallets[owner]
        batch.append(
            (
                row,
                _params(
                    posting_key(migration_id, row.row_id),
                    row.request_hash(),
                    actor,
                    action="opening_balance",
                    asset=row.asset,
                    amount=amount,
                    wallet_id=wallet,
                    leg_wallets=[account, wallet],
                    leg_amounts=[-amount, amount],
                    metadata={"migration_id": migration_id, "migration_row": row.row_id},
                    lot_expires_at=row.lot_expires_at.isoformat() if row.lot_expires_at else None,
                ),
            )
        )
    if batch:
        results, _calls = ledger.post_batch([params for _, params in batch])
        for (row, _), result in zip(batch, results, strict=True):
            if isinstance(result, DependencyUnavailable):
                raise result
            if isinstance(result, Exception):
                rejected.append(Rejected(row.source(), _reason(result)))
    return rejected


def _create_wallets(
    migration_id: str,
    chunk: list[OpeningRow],
    wallets: dict[WalletKey, int],
    admin: Any,
    actor: dict[str, Any],
) -> dict[WalletKey, str]:
    """The wallets this chunk names that the migration has not made yet, made in one
    call (or, when the database refuses one, one at a time to learn which): the owners
    refused, with why."""
    new: dict[WalletKey, OpeningRow] = {}
    for row in chunk:
        owner = _wallet_key(row)
        if owner not in wallets and owner not in new:
            new[owner] = row
    if not new:
        return {}
    marks = {"migration_id": migration_id}
    made = admin.create_wallets([_wallet_command(row) for row in new.values()], actor, marks)
    if made is not None:
        wallets.update(zip(new, made, strict=True))
        return {}
    refused: dict[WalletKey, str] = {}
    for owner, row in new.items():
        try:
            wallets[owner] = admin.create_wallet(_wallet_command(row), actor, marks)[0]
        except DependencyUnavailable:
            raise
        except LedgerError as error:
            refused[owner] = _reason(error)
    return refused


def _reason(error: Exception) -> str:
    return f"{error.code}: {error.message}" if isinstance(error, LedgerError) else str(error)


def _wallet_key(row: OpeningRow) -> WalletKey:
    return (row.owner, row.asset, row.model, row.parent)


def _wallet_command(row: OpeningRow) -> CreateWallet:
    return CreateWallet.model_validate(
        {
            "owner_id": row.owner,
            "asset": row.asset,
            "model": row.model,
            "parent_id": row.parent,
        }
    )


def _posted_before(migration_id: str, rows: list[OpeningRow], store: Any) -> tuple[set[str], list[str]]:
    """The rows that posted already, and those of them whose content is not what
    posted (the file changed since: a row inserted or removed shifts every later
    position-numbered row id onto another row's key)."""
    posted: set[str] = set()
    changed: list[str] = []
    for start in range(0, len(rows), LOOKUP):
        chunk = rows[start : start + LOOKUP]
        found = store.posted_rows(migration_id, [row.row_id for row in chunk], "opening_balance")
        for row in chunk:
            if row.row_id in found:
                posted.add(row.row_id)
                if found[row.row_id][4] != row.request_hash():
                    changed.append(row.row_id)
    return posted, changed


def _accepted(valid: list[OpeningRow], not_posted: list[Rejected]) -> list[OpeningRow]:
    """The file's accepted rows but those the ledger refused just now: what must be
    in the ledger. Accepted rows' ids are unique (a repeated id's later copies were
    rejected), so a refused row's id names it alone."""
    refused_ids = {r.source.get("row_id") for r in not_posted}
    return [row for row in valid if row.row_id not in refused_ids]


def _reconcile(migration_id: str, source: list[OpeningRow], store: Any) -> dict[str, Any]:
    """The file's rows against the ledger's postings of them, found by their keys:
    totals per asset and model, and every row whose posting is missing, voided or
    differs."""
    source_totals, ledger_totals = Totals(), Totals()
    unreconciled: list[dict[str, Any]] = []
    for start in range(0, len(source), LOOKUP):
        chunk = source[start : start + LOOKUP]
        posted = store.posted_rows(migration_id, [row.row_id for row in chunk], "opening_balance")
        for row in chunk:
            source_totals.add(row.asset, row.model, row.amount)
            found = posted.get(row.row_id)
            if found is None or found[3]:
                unreconciled.append({"row_id": row.row_id, "reason": "voided" if found else "not posted"})
                continue
            asset, model, amount, _voided, _hash = found
            ledger_totals.add(asset, model, amount)
            if (asset, model, amount) != (row.asset, row.model, row.amount):
                posting = {"asset": asset, "model": model, "amount": amount}
                unreconciled.append({"row_id": row.row_id, "reason": "posted with other content", "posted": posting})
    return {
        "source": source_totals.as_list(),
        "ledger": ledger_totals.as_list(),
        "unreconciled": unreconciled,
        "migration_postings": sum(rows for _, rows in ledger_totals.sums.values()),
    }


def _write_rejected(path: Path, rejected: list[Rejected], as_csv: Any = rejected_csv) -> None:
    if rejected:
        path.write_text(as_csv(rejected))
    elif path.exists():
        path.unlink()  # a rejected-rows file of an earlier run, now fixed


def _finish(report: dict[str, Any], ok: bool) -> None:
    report["ok"] = ok
    click.echo(json.dumps(report, indent=2, default=str))
    sys.exit(0 if ok else 1)


@click.group()
def main() -> None:
    pass


@main.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--migration-id", required=True)
@click.option("--dry-run", is_flag=True, help="validate and report; post nothing")
@click.option(
    "--rejected",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where rejected rows go (default FILE.rejected.csv)",
)
@click.option("--workers", type=click.IntRange(1, 6), default=WORKERS, show_default=True, help="batches in flight")
def import_(file: Path, migration_id: str, dry_run: bool, rejected: Path | None, workers: int) -> None:
    """Opening balances (row_id, owner, asset, amount, model, parent, lot_expires_at)."""
    try:
        check_migration_id(migration_id)
        read = [parse_opening(raw, datetime.now(UTC)) for raw in read_rows(file.read_text(), file.name)]
    except SourceError as error:
        raise click.ClickException(str(error)) from error
    rejected_path = rejected or file.with_name(file.name + ".rejected.csv")
    store = _store()
    try:
        valid, refused = first_of_each_row_id(read)
        valid, not_fit = _preflight(valid, store)
        refused += not_fit
        posted_before, changed = _posted_before(migration_id, valid, store)
        to_post = [row for row in valid if row.row_id not in posted_before]
        if changed:
            # Posting the rest could post a row's money a second time under a shifted id.
            click.echo(
                f"{len(changed)} rows posted before with other content (the file changed since): nothing posted;"
                " give every row a row_id that never changes, or restore the file",
                err=True,
            )
            _finish({"changed_since_posted": changed[:1000], "changed": len(changed), "posted_now": 0}, False)
        if dry_run:
            would = Totals()
            for row in to_post:
                would.add(row.asset, row.model, row.amount)
            _write_rejected(rejected_path, refused)
            report = {"dry_run": True, "would_post": would.as_list(), "already_posted": len(valid) - len(to_post)}
            _finish({**report, "rejected": len(refused), "rejected_file": str(rejected_path)}, not refused)
        with store.run_lock(migration_id) as mine:
            if not mine:
                click.echo(f"another run of migration {migration_id} is in progress; run it again later", err=True)
                sys.exit(2)
            not_posted = _post_rows(migration_id, to_post, store, workers)
        refused += not_posted
        report = _reconcile(migration_id, _accepted(valid, not_posted), store)
    except DependencyUnavailable as error:
        click.echo(f"{error.code}: {error.message}; run it again to continue", err=True)
        sys.exit(2)
    _write_rejected(rejected_path, refused)
    report.update(rows=len(read), posted_now=len(to_post) - len(not_posted), rejected=len(refused))
    report["rejected_file"] = str(rejected_path) if refused else None
    _finish(report, not refused and not report["unreconciled"])


@main.command()
@click.argument("plan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--migration-id", required=True)
@click.option("--dry-run", is_flag=True, help="validate and report; post nothing")
@click.option(
    "--rejected",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where rejected rows go (default PLAN.rejected.csv)",
)
def move(plan: Path, migration_id: str, dry_run: bool, rejected: Path | None) -> None:
    """Moves between existing wallets (row_id, source_wallet, target_wallet, amount or "all")."""
    from common.migrate_moves import run  # its own module: it imports this one's helpers

    run(plan, migration_id, dry_run, rejected)


@main.command()
@click.option("--migration-id", required=True)
def rollback(migration_id: str) -> None:
    """Void every posting of the migration not voided yet; run again to continue."""
    try:
        check_migration_id(migration_id)
    except SourceError as error:
        raise click.ClickException(str(error)) from error
    store, ledger, actor = _store(), bootstrap.ledger(), _actor(migration_id)
    failures: list[dict[str, Any]] = []
    try:
        # newest first: a later move may have passed on what an earlier posting gave
        pending = [p["id"] for p in reversed(store.postings_of(migration_id)) if not p["voided"]]
        pacer = bootstrap.pacer()
        with _progress("rollback", len(pending)) as advance:
            for start in range(0, len(pending), BATCH):
                chunk = pending[start : start + BATCH]
                with pacer.batch():
                    originals = store.entries_of(chunk)
                    batch = [_void_params(migration_id, i, originals[i], actor) for i in chunk]
                    results, _calls = ledger.post_batch(batch)
                for transaction_id, result in zip(chunk, results, strict=True):
                    if isinstance(result, DependencyUnavailable):
                        raise result
                    if isinstance(result, Exception):
                        failures.append({"transaction_id": transaction_id, "reason": _reason(result)})
                advance(len(chunk))
        left = [p["id"] for p in store.postings_of(migration_id) if not p["voided"]]
    except DependencyUnavailable as error:
        click.echo(f"{error.code}: {error.message}; run it again to continue", err=True)
        sys.exit(2)
    _finish({"voided_now": len(pending) - len(failures), "not_voided": left, "failures": failures}, not left)


def _void_params(migration_id: str, transaction_id: int, original: dict[str, Any], actor: dict[str, Any]) -> Any:
    """The original's entries negated (the void rule of 65_posting_rules.sql)."""
    return _params(
        void_key(migration_id, transaction_id),
        hashlib.sha256(f"void:{transaction_id}".encode()).hexdigest(),
        actor,
        action="void",
        asset=original["asset"],
        amount=original["amount"],
        wallet_id=original["wallet_id"],
        counterparty_wallet_id=original["counterparty_wallet_id"],
        leg_wallets=original["leg_wallets"],
        leg_amounts=[-amount for amount in original["leg_amounts"]],
        voids_transaction_id=transaction_id,
        metadata={"migration_id": migration_id, "migration_row": f"void:{transaction_id}"},
    )


if __name__ == "__main__":
    main()
