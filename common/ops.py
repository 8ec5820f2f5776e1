"""`python -m common.ops`: the operator's commands for events and the ERP export.

status            outbox backlog and stuck events, export cursor, batches by status
sweep             publish every pending ledger event now
export            run one ERP export pass (--until-caught-up: passes until nothing is left)
expire            expire every due lot now
parked            batches parked after repeated failures
replay BATCH_ID   send a parked batch again
reconcile         ledger vs ERP totals per period and GL account; exit 1 on any difference
checkpoints       advance the system accounts' balance checkpoints until caught up
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from common import bootstrap
from common.config import get_settings


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group()
def main() -> None:
    pass


@main.command()
def status() -> None:
    settings = get_settings()
    store = bootstrap.erp_store()
    after = store.cursor(settings.erp_stream)
    _print(
        {
            "outbox": bootstrap.outbox().backlog(settings.outbox_stuck_after_s),
            "erp_export": {
                "exported_up_to": {"created_xact": after[0], "transaction_id": after[1]},
                "stream": settings.erp_stream,
                "batches": store.status_counts(settings.erp_stream),
            },
        }
    )


@main.command()
def sweep() -> None:
    """Publish every pending event, paced (LEDGER_JOB_PACING=off runs it flat out)."""
    result = bootstrap.relay().sweep_all(pacer=bootstrap.pacer())
    backlog = bootstrap.outbox().backlog(get_settings().outbox_stuck_after_s)
    _print(
        {
            "published": result.published,
            "failed": result.failed,
            "another_sweep": result.another_sweep,
            "backlog": backlog,
            "pacing": result.pacing,
        }
    )
    sys.exit(1 if backlog["pending"] or result.another_sweep else 0)


@main.command()
def expire() -> None:
    """Expire every due lot now, paced, as the lot_expiry tick does but without its time budget."""
    result = bootstrap.service().expire_lots(budget=10**12, pacer=bootstrap.pacer(), publish_after_commit=False)
    _print(result)
    sys.exit(1 if result["failed"] or result["busy"] else 0)


@main.command()
@click.option(
    "--until-caught-up", is_flag=True, help="passes back to back until one finds nothing left (a backlog's catch-up)"
)
def export(until_caught_up: bool) -> None:
    """One ERP export pass, paced like the scheduled one (LEDGER_JOB_PACING=off runs it flat out)."""
    export = bootstrap.erp_export()
    passes, events = 0, 0
    while True:
        report = export.run_pass()
        passes, events = passes + 1, events + report.events
        if not until_caught_up or report.caught_up or report.erp_down or not report.events:
            break
    _print({**report.as_dict(), "passes": passes, "events_all_passes": events})
    # caught up, or not asked to be; a pass that found another moving the cursor is not
    sys.exit(1 if report.erp_down or (until_caught_up and not report.caught_up) else 0)


@main.command()
def parked() -> None:
    _print(bootstrap.erp_store().parked(get_settings().erp_stream))


@main.command()
@click.argument("batch_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="every parked batch of the stream")
def replay(batch_ids: tuple[str, ...], replay_all: bool) -> None:
    store = bootstrap.erp_store()
    if replay_all:
        batch_ids = tuple(batch["id"] for batch in store.parked(get_settings().erp_stream, limit=10_000))
    if not batch_ids:
        raise click.ClickException("name the parked batches to replay, or --all")
    for batch_id in batch_ids:
        if not store.replay(batch_id):
            raise click.ClickException(f"{batch_id} is not a parked batch")
    report = bootstrap.erp_export().run_pass()
    _print({"replayed": list(batch_ids), "pass": report.as_dict()})
    sys.exit(1 if report.erp_down else 0)


@main.command()
@click.option(
    "--full", is_flag=True, help="also sum every delivered batch afresh and check the running totals against that"
)
def reconcile(full: bool) -> None:
    from common.erp_export import ReadingUnsettled, StillSumming
    from common.erp_export import reconcile as run

    try:
        report = run(bootstrap.erp_store(), bootstrap.erp_client(), get_settings().erp_stream, full=full)
    except (ReadingUnsettled, StillSumming) as error:
        raise click.ClickException(f"{error}; run it again") from error
    _print(report)
    sys.exit(0 if report["ok"] else 1)


@main.command()
def checkpoints() -> None:
    from common.balance_checkpoints import advance

    _print(advance(bootstrap.checkpoint_store(), pacer=bootstrap.pacer()))


if __name__ == "__main__":
    main()
