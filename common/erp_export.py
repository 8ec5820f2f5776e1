"""The ERP export: ledger transactions to balanced journal batches, delivered once in effect.

A pass (the `erp_export` function runs one per Cloud Scheduler tick):
1. re-sends batches whose retry time has come, each rebuilt from its range of the ledger
   with the chart it was first built with, so it is the same batch;
2. walks the ledger in export order from the stream's cursor, a page of
   `batch_events` transactions at a time: maps the page to journal lines, records the
   batch and moves the cursor in one database statement, then delivers it.

Nothing is lost: the cursor only moves past transactions that are in a recorded batch,
and a recorded batch is delivered, retried with backoff, or parked where an operator
sees it (`python -m common.ops`). Nothing is doubled: a batch's id is derived from its
stream, range and chart, so a re-sent batch has the id the ERP already holds. Memory stays flat:
one page is in memory at a time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.erp.chart import Chart
from common.erp.mapping import Mapper, Position, Transaction, batch_id, totals, unbalanced
from common.pacing import Pacer, unpaced

log = logging.getLogger("ledger.erp_export")


class Store(Protocol):
    def next_page(self, after: Position, limit: int) -> list[tuple[Position, Transaction]]: ...
    def transactions_in(self, after: Position, last: Position) -> list[tuple[Position, Transaction]]: ...
    def cursor(self, stream: str) -> Position: ...
    def save_chart(self, chart: Chart) -> None: ...
    def chart(self, version: str) -> Chart: ...
    def record_batch(
        self,
        stream: str,
        batch_id: str,
        after: Position,
        last: Position,
        chart_version: str,
        events: int,
        lines: int,
        totals: dict[str, Any],
    ) -> bool: ...
    def due(self, stream: str, limit: int) -> list[dict[str, Any]]: ...
    def mark_delivered(self, batch_id: str, acknowledgement: dict[str, Any]) -> None: ...
    def mark_failed(self, batch_id: str, error: str, retry_in_s: float, park_after: int) -> str | None: ...
    def status_counts(self, stream: str) -> dict[str, int]: ...


class Erp(Protocol):
    def deliver(self, batch_id: str, body: bytes) -> dict[str, Any]: ...


class DeliveryFailed(Exception):
    """The ERP did not acknowledge a batch (unreachable, or an answer other than 2xx or 409)."""


class ExportError(Exception):
    """The ledger gave lines that do not balance: a bug, never sent to the ERP."""


@dataclass
class PassReport:
    batches: int = 0
    events: int = 0
    lines: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    parked: list[str] = field(default_factory=list)  # parked in this pass
    parked_batches: int = 0  # parked now, by any pass and not replayed yet: what an alert watches
    erp_down: bool = False
    caught_up: bool = False
    pacing: dict[str, Any] = field(default_factory=dict)  # how the pass worked and rested (common/pacing.py)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ErpExport:
    def __init__(
        self,
        store: Store,
        erp: Callable[[], Erp],
        chart: Chart,
        stream: str = "erp",
        batch_events: int = 1000,
        park_after: int = 5,
        retry_base_s: float = 60.0,
        retry_max_s: float = 3600.0,
        budget_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        pacer: Callable[[], Pacer] = unpaced,
    ) -> None:
        self._store = store
        self._erp = erp  # built on first delivery: a pass with nothing to send needs no client
        self._chart = chart
        self._stream = stream
        self._batch_events = batch_events
        self._park_after = park_after
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._budget_s = budget_s
        self._clock = clock
        self._pacer = pacer  # a new one per pass: each page is a batch, rested for (docs/background-jobs.md)
        self._mappers: dict[str, Mapper] = {chart.version: Mapper(chart)}
        self._chart_saved = False

    def run_pass(self) -> PassReport:
        report = PassReport()
        started = self._clock()
        if not self._chart_saved:
            self._store.save_chart(self._chart)
            self._chart_saved = True
        pacer = self._pacer()
        for batch in self._store.due(self._stream, limit=100):
            if self._clock() - started >= self._budget_s:
                break  # the next pass sends the rest
            report.retried += 1
            with pacer.batch():  # the database's part: rebuild it from its range
                lines, sums = self._rebuild(batch)
            if not self._deliver(batch["id"], lines, sums, batch["event_count"], batch["attempts"], report):
                break  # the ERP is down: the rest wait for their own retry time
        after = self._store.cursor(self._stream)
        while self._clock() - started < self._budget_s:
            with pacer.batch():  # the database's part: read, map and record one page
                page = self._store.next_page(after, self._batch_events)
                if not page:
                    report.caught_up = True
                    break
                last = page[-1][0]
                lines, sums = self._lines(page, self._chart.version)
                identity = batch_id(self._stream, after, last, self._chart.version)
                if unbalanced(sums):
                    raise ExportError(f"batch {identity} does not balance in {unbalanced(sums)}: {sums}")
                if not self._store.record_batch(
                    self._stream, identity, after, last, self._chart.version, len(page), len(lines), sums
                ):
                    log.info("another export pass moved the cursor first; leaving the rest to it")
                    break
            pacer.counted(len(page))  # for min_rate: a backlog clears in bounded time
            report.batches += 1
            report.events += len(page)
            report.lines += len(lines)
            after = last
            if not report.erp_down:
                # the ERP's time, not the database's: left out of the pacer's
                self._deliver(identity, lines, sums, len(page), attempts=0, report=report)
            # With the ERP down, recorded batches wait for their retry time (now): the
            # next pass sends them. Building them now keeps the cursor current.
            if len(page) < self._batch_events:
                # the horizon reached: what committed since is the next pass's, or a
                # pass beside live traffic would chase its tail in batches of a few
                report.caught_up = True
                break
        report.pacing = pacer.report()
        report.parked_batches = self._store.status_counts(self._stream).get("parked", 0)
        return report

    def _rebuild(self, batch: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
        """A recorded batch's lines, rebuilt from its range of the ledger with its chart."""
        after, last = (batch["after_xact"], batch["after_id"]), (batch["last_xact"], batch["last_id"])
        page = self._store.transactions_in(after, last)
        lines, sums = self._lines(page, batch["chart_version"])
        if (
            batch_id(self._stream, after, last, batch["chart_version"]) != batch["id"]
            or len(page) != batch["event_count"]
            or sums != batch["totals"]
        ):
            raise ExportError(f"batch {batch['id']} no longer rebuilds to the same content")
        return lines, sums

    def _lines(
        self, page: list[tuple[Position, Transaction]], chart_version: str
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
        """A page's journal lines under a chart (loaded once per version), and their sums."""
        mapper = self._mappers.get(chart_version)
        if mapper is None:
            mapper = self._mappers[chart_version] = Mapper(self._store.chart(chart_version))
        lines = [line for _, transaction in page for line in mapper.lines(transaction)]
        return lines, totals(lines)

    def _deliver(
        self,
        identity: str,
        lines: list[dict[str, Any]],
        sums: dict[str, Any],
        events: int,
        attempts: int,
        report: PassReport,
    ) -> bool:
        if not lines:
            # only postings the chart excludes (migrations): the range is done, and there
            # is nothing an ERP could book (it refuses a batch without lines)
            self._store.mark_delivered(identity, {"lines": 0})
            report.delivered += 1
            return True
        body = json.dumps(
            {"batch_id": identity, "event_count": events, "totals": sums, "lines": lines}, separators=(",", ":")
        ).encode()
        try:
            acknowledgement = self._erp().deliver(identity, body)
        except DeliveryFailed as error:
            retry_in = min(self._retry_max_s, self._retry_base_s * 2**attempts)
            status = self._store.mark_failed(identity, str(error), retry_in, self._park_after)
            report.failed += 1
            report.erp_down = True
            if status == "parked":
                report.parked.append(identity)
                log.error("ERP batch parked after repeated failures", extra={"batch_id": identity, "error": str(error)})
            else:
                log.warning("ERP delivery failed; will retry", extra={"batch_id": identity, "error": str(error)})
            return False
        self._store.mark_delivered(identity, acknowledgement)
        report.delivered += 1
        return True


class ErpTotals(Protocol):
    def totals(self) -> list[dict[str, Any]]: ...


class DeliveredSums(Protocol):
    def stream(self, stream: str) -> tuple[Position, Position]: ...
    def fold_delivered(self, stream: str, batches: int = 20) -> int: ...
    def unsummed_count(self, stream: str) -> int: ...
    def running_totals(self, stream: str, with_ids: bool = False) -> tuple[list[list[Any]], int, list[str] | None]: ...
    def scanned_sums(self, batch_ids: list[str], batches: int = 20) -> list[list[Any]]: ...
    def status_counts(self, stream: str) -> dict[str, int]: ...
    def chart(self, version: str) -> Chart: ...


class StillSumming(Exception):
    """The delivered batches were not all summed within the run's budget. What was
    summed stays summed (each step commits); the next run goes on from there."""


def sum_delivered(
    store: DeliveredSums,
    stream: str,
    deadline: float | None = None,
    batches_per_step: int = 20,
    pacer: Pacer | None = None,
) -> int:
    """Add every delivered batch not summed yet to the running totals, `batches_per_step`
    batches a transaction (about 0.1 s for batches of 1,000 transactions), resting after
    each as `pacer` says; how many. Raises StillSumming when the `deadline`
    (time.monotonic()) passes first."""
    pacer = pacer or unpaced()
    summed = 0
    while True:
        with pacer.batch():
            step = store.fold_delivered(stream, batches_per_step)
        if not step:
            break
        summed += step
        if deadline is not None and time.monotonic() > deadline and store.unsummed_count(stream):
            raise StillSumming(f"summed {summed} delivered batches; the next run sums the rest")
    return summed


class ReadingUnsettled(Exception):
    """The running totals and the delivered batches kept moving while they were read
    (deliveries, or another run summing): nothing compared; the next run reads again."""


def reconcile(
    store: DeliveredSums,
    erp: ErpTotals,
    stream: str = "erp",
    attempts: int = 5,
    full: bool = False,
    budget_s: float | None = None,
    batches_per_step: int = 20,
    pause_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    pacer: Pacer | None = None,
) -> dict[str, Any]:
    """The ledger's debits and credits per period and GL account, over the stream's
    delivered batches (each mapped with the chart it was built with), against the ERP's
    own booked totals. `ok` is False on any difference. Batches not delivered yet are
    counted, not compared.

    The ledger's side is the running totals of the delivered batches, each summed once
    (erp.fold_delivered): the cost of a run follows what was delivered since the last.
    They are read with the count of the batches they cover, in one statement, and
    compared only when those are every batch delivered by the time the ERP's totals
    were read; otherwise the reading is repeated after a pause, and after `attempts`
    readings the run raises ReadingUnsettled rather than compare. A difference found is
    read once more after a pause before it is reported: an exporter may have delivered
    a batch the ERP already booked but not yet marked it delivered. `full` also sums the
    covered batches' ledger rows afresh and compares those sums with the running totals
    (`totals_match`). `budget_s` bounds the summing over all readings (StillSumming)."""
    from common.erp import reconcile as compare

    Totals = dict[compare.Key, tuple[int, int]]
    deadline = None if budget_s is None else time.monotonic() + budget_s
    charts: dict[str, Chart] = {}

    def ledger_totals(rows: list[list[Any]]) -> Totals:
        for version in {row[0] for row in rows} - set(charts):
            charts[version] = store.chart(version)
        return compare.ledger_totals(rows, charts)

    def settled_reading() -> tuple[Totals, list[str] | None, Totals, dict[str, int]]:
        """The running totals, the ids of the batches they cover (with `full`), the
        ERP's totals and the batch counts, once the totals cover every batch delivered
        by the time the ERP's totals were read: a batch delivered meanwhile, or held by
        a run summing alongside (SKIP LOCKED), makes it read again after a pause."""
        for attempt in range(attempts):
            if attempt:
                sleep(pause_s * attempt)
            sum_delivered(store, stream, deadline, batches_per_step, pacer)
            rows, covered, ids = store.running_totals(stream, with_ids=full)
            booked = compare.erp_totals(erp.totals())
            batches = store.status_counts(stream)
            if batches.get("delivered", 0) == covered:
                return ledger_totals(rows), ids, booked, batches
        raise ReadingUnsettled(f"the delivered batches kept changing over {attempts} readings")

    ledger, covered, booked, batches = settled_reading()
    if compare.differences(ledger, booked):
        sleep(pause_s)
        ledger, covered, booked, batches = settled_reading()
    scanned = ledger_totals(store.scanned_sums(covered or [])) if full else None
    found = compare.differences(ledger, booked)
    _, upto = store.stream(stream)
    report: dict[str, Any] = {
        "ok": not found,
        "stream": stream,
        "exported_up_to": {"created_xact": upto[0], "transaction_id": upto[1]},
        "batches": batches,
        "differences": found,
        "undelivered_batches": batches.get("pending", 0) + batches.get("parked", 0),
    }
    if scanned is not None:
        report["totals_match"] = scanned == ledger
        report["totals_mismatches"] = [
            {
                "period": key[0],
                "account": key[1],
                "currency": key[2],
                "running": ledger.get(key),
                "scanned": scanned.get(key),
            }
            for key in sorted(set(ledger) | set(scanned))
            if ledger.get(key) != scanned.get(key)
        ]
        report["ok"] = report["ok"] and report["totals_match"]
    return report
