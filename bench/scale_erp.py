"""The ERP export rate on one database of `python -m bench.scale` (the fresh ledger or
the grown one): `count` new ledger transactions exported by the export's own code.

The export runs in-process (common/erp_export.py's ErpExport over common/'s ErpStore,
ErpClient and chart, built here rather than by common/bootstrap.py because bootstrap
serves the one database its settings name), logged in as the erp_export function is,
against the stack's ERP receiver in books of its own (`/books/<name>`: the stack's main
books, which its erp_reconcile compares with the stack's own ledger, are left alone).

First an unmeasured pass catches the stream up: on the grown ledger its cursor stands
at the seed's end (bench/grow.py), so that pass exports only what earlier runs posted
after it; on the fresh one, its trees' postings. Then `count` transactions (top-ups,
usages and transfers among the IDR customers) are posted through
ledger.commit_posting(), and passes run until they are all exported: events per second.
The receiver must have booked exactly the lines sent, none twice, all balanced.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pg8000.native

from bench import grow
from common.adapters.erp_http import ErpClient
from common.adapters.erp_store import ErpStore
from common.adapters.postgres import Pool
from common.bootstrap import connect_postgres
from common.config import Settings
from common.erp.chart import load_chart
from common.erp_export import ErpExport
from emulators.stack import ERP_TOKEN, Stack

CHUNK = 1_000  # postings per statement (one database transaction each)

# g % 4: 0 a top-up of 1,000 (funding -> w), 1 and 3 a usage of 100 (w -> revenue), 2 a
# transfer of 100 to the customer five on (w -> w5). Wallets are every fifth customer
# (bench/grow.py: those are IDR), each topped up before it pays.
_POSTINGS = """
SELECT ledger.commit_posting(:run || '-' || g, 'bench', p.action, 'IDR', p.amount, p.w,
                             CASE WHEN p.action = 'transfer' THEN p.w5 END,
                             ARRAY[p.source, p.target], ARRAY[-p.amount, p.amount],
                             p_external_ref => CASE WHEN p.action = 'topup' THEN :run || '-' || g END,
                             p_usage_id => CASE WHEN p.action = 'usage' THEN :run || '-' || g END,
                             p_product => CASE WHEN p.action = 'usage' THEN 'gpu-minutes' END)
  FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) g
 CROSS JOIN LATERAL (SELECT CAST(:first AS bigint) + ((g / 4) * 5) % :customers AS w,
                            CAST(:first AS bigint) + ((g / 4) * 5 + 5) % :customers AS w5) c
 CROSS JOIN LATERAL (SELECT (ARRAY['topup', 'usage', 'transfer', 'usage'])[g % 4 + 1] AS action,
                            CASE WHEN g % 4 = 0 THEN 1000 ELSE 100 END::bigint AS amount, c.w, c.w5,
                            CASE WHEN g % 4 = 0 THEN CAST(:funding AS bigint) ELSE c.w END AS source,
                            CASE g % 4 WHEN 0 THEN c.w WHEN 2 THEN c.w5 ELSE CAST(:revenue AS bigint) END
                              AS target) p
 ORDER BY g
"""


def post(stack: Stack, name: str, count: int, run: str) -> None:
    """`count` postings through ledger.commit_posting(), as the database's owner."""
    con = pg8000.native.Connection(**grow.database_dsn(stack, name))
    try:
        first, customers = con.run("SELECT first_customer, customers FROM public.grown_ledger")[0]
        funding, revenue = (
            con.run(
                "SELECT id FROM ledger.wallets WHERE kind = 'system' AND asset_code = 'IDR' AND system_role = :r", r=r
            )[0][0]
            for r in ("funding", "revenue")
        )
        for lo in range(0, count, CHUNK):
            con.run(
                _POSTINGS,
                run=f"scale-erp-{run}",
                lo=lo,
                hi=min(count, lo + CHUNK) - 1,
                first=first,
                customers=customers,
                funding=funding,
                revenue=revenue,
            )
    finally:
        con.close()


def _receiver(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def export_rate(stack: Stack, name: str, count: int, run: str, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Events per second exporting `count` new transactions of database `name`."""
    settings = Settings.from_env({**stack.function_env("erp_export"), "LEDGER_DB_NAME": name})
    pool = Pool(lambda: connect_postgres(settings), size=2, max_age_s=settings.db_conn_max_age_s)
    url = f"{stack.function_url('erp')}/books/scale-{run}-{name}"
    client = ErpClient(url, ERP_TOKEN, settings.erp_timeout_s)
    export = ErpExport(
        ErpStore(pool),
        lambda: client,
        load_chart(),
        stream=settings.erp_stream,
        batch_events=settings.erp_batch_events,
        budget_s=timeout_s,
    )
    try:
        _clean(export.run_pass())  # unmeasured: what was there before this run
        before = _receiver(url, "/stats")
        post(stack, name, count, run)
        events = lines = batches = 0
        started = time.monotonic()
        while events < count:  # a transaction still open elsewhere holds the export's horizon back
            report = _clean(export.run_pass())
            events, lines, batches = events + report.events, lines + report.lines, batches + report.batches
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{name}: the export did not catch up within {timeout_s:.0f} s")
            if not report.events:
                time.sleep(0.05)
        seconds = time.monotonic() - started
        booked = _receiver(url, "/stats")
        if (
            events != count
            or booked["lines"] - before["lines"] != lines
            or booked["duplicates"]
            or booked["unbalanced"]
        ):
            raise RuntimeError(f"{name}: exported {events} of {count} events, {lines} lines; the ERP booked {booked}")
        return {"events": events, "lines": lines, "batches": batches, "seconds": seconds, "per_s": events / seconds}
    finally:
        pool.close()
        _receiver(url, "/control", {"reset": True})  # the stack's receiver keeps no bench books


def _clean(report: Any) -> Any:
    if report.erp_down or report.failed or report.delivered != report.batches + report.retried:
        raise RuntimeError(f"an export pass did not finish cleanly: {report.as_dict()}")
    return report
