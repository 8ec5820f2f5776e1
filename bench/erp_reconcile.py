"""`python -m bench.erp_reconcile`: what a run of the ERP reconciliation costs as the
exported ledger grows (docs/events-and-erp.md#reconciliation).

On the dev stack, in an export stream and ERP books of its own: seeds `--count` ledger
transactions (bench/erp_export.py's bulk seed), exports them in-process with the
export's own code to a receiver that keeps totals only, then times the reconciliation
(common/erp_export.py, logged in as the erp_reconcile function is):

  - the first run, which sums every delivered batch into the running totals once (what
    the first run after the upgrade to running totals pays, and about what every run
    paid before them, when each scanned every exported transaction);
  - a run with nothing delivered since (the daily run on a quiet day);
  - a run after `--tail` more transactions were exported (a day's new batches);
  - the full check (`ops reconcile --full`): running totals against a fresh sum of every
    delivered batch.

Every run must come out clean (no difference with the ERP, totals matching the scan);
the figures are printed, never judged. Publish them (`--out`, in bench/results/) only
from a quiet machine.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import click

from bench.erp_export import seed, totals_receiver
from common.adapters.erp_http import ErpClient
from common.adapters.erp_store import ErpStore
from common.adapters.postgres import Pool
from common.bootstrap import connect_postgres
from common.config import Settings
from common.erp.chart import load_chart
from common.erp_export import ErpExport, reconcile
from emulators.stack import Stack


def _timed(what: str, store: ErpStore, client: ErpClient, stream: str, full: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    report = reconcile(store, client, stream, full=full)
    seconds = time.perf_counter() - started
    if not report["ok"] or report["undelivered_batches"]:
        raise RuntimeError(f"{what}: the reconciliation is not clean: {report}")
    return {"run": what, "seconds": seconds, "delivered": report["batches"].get("delivered", 0)}


def _export(export: ErpExport, count: int, budget_s: float = 3600.0) -> int:
    started, events = time.monotonic(), 0
    while events < count:  # a transaction still open elsewhere holds the export's horizon back
        report = export.run_pass()
        if report.failed or report.parked:
            raise RuntimeError(f"the export failed: {report.as_dict()}")
        events += report.events
        if time.monotonic() - started > budget_s:
            raise RuntimeError(f"the export did not catch up within {budget_s:.0f} s")
        if not report.events:
            time.sleep(0.05)
    return events


def run(stack: Stack, count: int, tail: int) -> dict[str, Any]:
    from bench.setup import empty_erp_stream

    stream = empty_erp_stream(stack)
    settings = Settings.from_env(stack.function_env("erp_reconcile"))
    pool = Pool(lambda: connect_postgres(settings), size=2, max_age_s=settings.db_conn_max_age_s)
    try:
        with totals_receiver(stack) as port:
            book = f"http://127.0.0.1:{port}/books/{stream}-{uuid.uuid4().hex[:6]}"
            client, store = ErpClient(book, "", settings.erp_timeout_s), ErpStore(pool)
            export = ErpExport(
                store, lambda: client, load_chart(), stream=stream, batch_events=settings.erp_batch_events
            )
            seed(stack, count)
            started = time.monotonic()
            exported = _export(export, count)
            export_s = time.monotonic() - started
            runs = [_timed("first run: sums every delivered batch once", store, client, stream)]
            runs.append(_timed("next run, nothing delivered since", store, client, stream))
            seed(stack, tail)
            _export(export, tail)
            runs.append(_timed(f"next run, {tail:,} transactions delivered since", store, client, stream))
            runs.append(_timed("full check: running totals against a fresh sum", store, client, stream, full=True))
    finally:
        pool.close()
    return {"count": count, "tail": tail, "exported": exported, "export_s": export_s, "runs": runs}


def table(figures: dict[str, Any]) -> str:
    rows = [
        f"{figures['count']:,} transactions exported in {figures['runs'][0]['delivered']:,} batches "
        f"({figures['export_s']:.0f} s), then {figures['tail']:,} more",
        "",
        "| run | delivered batches | seconds |",
        "|---|---:|---:|",
    ]
    rows += [f"| {r['run']} | {r['delivered']:,} | {r['seconds']:.2f} |" for r in figures["runs"]]
    return "\n".join(rows)


@click.command()
@click.option("--count", default=500_000, show_default=True, help="Transactions exported before the first run.")
@click.option("--tail", default=10_000, show_default=True, help="Transactions exported between the runs.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the table here (bench/results/).")
def main(count: int, tail: int, profile: str, out: Path | None) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    text = table(run(stack, count, tail))
    click.echo(text)
    if out:
        command = f"python -m bench.erp_reconcile --count {count} --tail {tail}"
        out.write_text(
            f"# The ERP reconciliation as the exported ledger grows\n\n`{command}`, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, on the dev stack.\n\n{text}\n"
        )


if __name__ == "__main__":
    main()
