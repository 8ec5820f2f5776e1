"""Dormant processing (docs/dormancy.md): the bulk run and its report, and
`python -m common.dormancy`, the operator's command.

run [--csv PATH] [--products-csv PATH]
                        one run now, as the scheduled function does; the report per asset
                        and model as CSV (stdout, or PATH), per asset, model and product
                        where the credit was traced (PATH), and one summary log line
report                  where dormancy stands per asset and model (CSV): wallets dormant,
                        swept balances still in the dormant accounts, breakage not given
                        back, reactivations
reactivate WALLET_ID    bring a dormant wallet back: active again, its sweep voided
policy list|set         the policies per asset and model (common/dormancy_policy.py)

The database decides (ledger.dormancy_run, db/schema/86_dormancy.sql): pages of wallets
in id order, each under its own lock taken with SKIP LOCKED, once per (wallet, period).
This side pages, publishes what the database decided (a warning notice, a sweep's
ledger event) and counts. A run stopped halfway is resumed by the next one: what it did
is recorded per wallet and period, so nothing happens twice and a second run finds
nothing to do.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import click

from common.dormancy_policy import policy
from common.errors import LedgerError
from common.pacing import Pacer, unpaced

log = logging.getLogger("ledger.dormancy")

WARNING_NOTICE = "wallet_dormancy_warning"
ACTOR = {"principal": "ledger:dormancy-cli", "role": "operator"}


@dataclass
class Tally:
    scanned: int = 0
    warned: int = 0
    marked: int = 0
    swept: int = 0
    swept_amount: int = 0
    broken: int = 0  # a breakage policy: the balance recognized as revenue
    broken_amount: int = 0
    closed: int = 0  # a delete policy: closed at dormancy, for good
    busy: int = 0  # a posting held the wallet, or (delete) due lots wait for the expiry job: a later run takes it
    failed: int = 0
    notices_failed: int = 0  # decided and recorded, the notice not confirmed: not sent again


@dataclass
class ProductTally:
    """What one product's traced credit came to (product "": the untraced rest)."""

    postings: int = 0
    swept_amount: int = 0
    broken_amount: int = 0


@dataclass
class DormancyReport:
    by_asset_model: dict[tuple[str, str], Tally] = field(default_factory=dict)
    by_product: dict[tuple[str, str, str], ProductTally] = field(default_factory=dict)
    # the run stopped on its wallet or time budget: wallets may be due still, which the
    # next run takes (a warned wallet is not scanned again until it is due, so each run
    # goes further than the last)
    stopped_on_budget: bool = False
    pacing: dict[str, Any] = field(default_factory=dict)

    def tally(self, asset: str, model: str) -> Tally:
        return self.by_asset_model.setdefault((asset, model), Tally())

    def product(self, asset: str, model: str, product: str | None) -> ProductTally:
        return self.by_product.setdefault((asset, model, product or ""), ProductTally())

    def products_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        names = [f.name for f in fields(ProductTally)]
        writer.writerow(["asset", "model", "product", *names])
        for (asset, model, product), tally in sorted(self.by_product.items()):
            writer.writerow([asset, model, product, *(getattr(tally, name) for name in names)])
        return out.getvalue()

    def total(self) -> Tally:
        total = Tally()
        for tally in self.by_asset_model.values():
            for name in (f.name for f in fields(Tally)):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        return total

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        names = [f.name for f in fields(Tally)]
        writer.writerow(["asset", "model", *names])
        for (asset, model), tally in sorted(self.by_asset_model.items()):
            writer.writerow([asset, model, *(getattr(tally, name) for name in names)])
        return out.getvalue()

    def summary(self) -> dict[str, Any]:
        return {**vars(self.total()), "stopped_on_budget": self.stopped_on_budget, "pacing": self.pacing}


class DormancyRunner:
    def __init__(
        self,
        ledger: Any,
        notices: Callable[[], Any],
        committed: Callable[[int], None],
        page: int = 50,
        budget: int = 100_000,
        pacer: Callable[[], Pacer] = unpaced,
        budget_s: float = float("inf"),
    ) -> None:
        """`page`: wallets per database call, each a subtransaction (keep it under 64,
        see 86_dormancy.sql). `budget`: wallets at most per run, `budget_s` seconds at
        most; the next run goes on. `pacer`: a new one per run, rested for after each
        page (common/pacing.py)."""
        self.ledger = ledger
        self._notices = notices  # built on first use: most runs warn nobody
        self._committed = committed
        self._page = page
        self._budget = budget
        self._pacer = pacer
        self._budget_s = budget_s

    def run(self) -> DormancyReport:
        report = DormancyReport()
        pacer = self._pacer()
        started = time.monotonic()
        after = 0
        scanned = 0
        while True:
            if scanned >= self._budget or time.monotonic() - started >= self._budget_s:
                report.stopped_on_budget = True
                break
            page = pacer.size(self._page)  # paced, sized to a short batch
            with pacer.batch():
                outcomes = self.ledger.dormancy_run(page, after)
                for outcome in outcomes:
                    self._count(report, outcome)
            pacer.counted(len(outcomes))
            scanned += len(outcomes)
            after = max((o["wallet_id"] for o in outcomes), default=after)
            if len(outcomes) < page:
                break
        report.pacing = pacer.report()
        log.log(logging.WARNING if report.stopped_on_budget else logging.INFO, "dormancy run", extra=report.summary())
        return report

    def _count(self, report: DormancyReport, outcome: dict[str, Any]) -> None:
        tally = report.tally(outcome["asset"], outcome["model"])
        tally.scanned += 1
        tally.closed += 1 if outcome.get("closed") else 0
        kind = outcome["outcome"]
        if kind == "warned":
            tally.warned += 1
            if not self._warn(outcome):
                tally.notices_failed += 1
        elif kind == "marked":
            tally.marked += 1
        elif kind in ("swept", "broken"):
            if kind == "swept":
                tally.swept, tally.swept_amount = tally.swept + 1, tally.swept_amount + outcome["amount"]
            else:
                tally.broken, tally.broken_amount = tally.broken + 1, tally.broken_amount + outcome["amount"]
            for posting in outcome["postings"]:
                by_product = report.product(outcome["asset"], outcome["model"], posting["product"])
                by_product.postings += 1
                if kind == "swept":
                    by_product.swept_amount += posting["amount"]
                else:
                    by_product.broken_amount += posting["amount"]
                self._tell_committed(posting["transaction_id"])
        elif kind == "busy":
            tally.busy += 1
        elif kind == "failed":
            tally.failed += 1
            log.error("dormancy failed", extra=outcome)

    def _warn(self, outcome: dict[str, Any]) -> bool:
        """At most once per wallet and period: the database recorded the warning before
        this runs, so a notice that fails is counted and logged, never sent twice."""
        notice = {
            "kind": WARNING_NOTICE,
            "wallet_id": outcome["wallet_id"],
            "asset": outcome["asset"],
            "model": outcome["model"],
            "dormant_on": outcome["dormant_on"],
        }
        attributes = {"kind": WARNING_NOTICE, "wallet_id": str(outcome["wallet_id"])}
        try:
            self._notices().send(notice, attributes)
        except LedgerError:
            log.warning("dormancy warning not published", extra=notice)
            return False
        return True

    def _tell_committed(self, transaction_id: int) -> None:
        try:
            self._committed(transaction_id)
        except Exception:  # noqa: BLE001 - the sweep stands; its event waits in the outbox
            log.warning("after-commit hook failed", exc_info=True, extra={"transaction_id": transaction_id})


def runner(budget_s: float = float("inf")) -> DormancyRunner:
    from common import bootstrap

    # The sweeps' events go out with the paced outbox sweep, not after each commit: a
    # job's events are nobody's request (docs/background-jobs.md)
    return DormancyRunner(
        bootstrap.ledger(), bootstrap.notices, lambda transaction_id: None, pacer=bootstrap.pacer, budget_s=budget_s
    )


@click.group()
def main() -> None:
    pass


@main.command()
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True), help="write the report here")
@click.option(
    "--products-csv",
    type=click.Path(dir_okay=False, writable=True),
    help="write the amounts per asset, model and product here",
)
def run(csv_path: str | None, products_csv: str | None) -> None:
    report = runner().run()
    if csv_path:
        with open(csv_path, "w", encoding="utf-8") as out:
            out.write(report.as_csv())
    else:
        click.echo(report.as_csv(), nl=False)
    if products_csv:
        with open(products_csv, "w", encoding="utf-8") as out:
            out.write(report.products_csv())
    click.echo(json.dumps(report.summary()), err=True)
    sys.exit(1 if report.total().failed else 0)


@main.command()
def report() -> None:
    """Where dormancy stands, per asset and model, as CSV."""
    from common import bootstrap

    rows = bootstrap.ledger().dormancy_standing()
    out = io.StringIO()
    columns = ["asset", "model", "dormant", "swept_outstanding", "broken_outstanding", "reactivated"]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    click.echo(out.getvalue(), nl=False)


@main.command()
@click.argument("wallet_id", type=click.IntRange(min=1))
def reactivate(wallet_id: int) -> None:
    from common import bootstrap

    try:
        void_id = bootstrap.ledger().dormancy_reactivate(wallet_id, ACTOR)
    except LedgerError as error:  # no such wallet, or one closed at dormancy for good
        raise click.ClickException(f"{error.code}: {error.message}") from None
    if void_id is not None:
        bootstrap.after_commit().submit(void_id)
    click.echo(json.dumps({"wallet_id": wallet_id, "reactivation_transaction_id": void_id}))


main.add_command(policy)

if __name__ == "__main__":
    main()
