"""The background jobs of `python -m bench.background`: each one's backlog, the commands
an operator runs to clear it, and what is undone between two runs over the same backlog.

Every job runs as its operator's commands in child processes, with the stack's
environment and LEDGER_JOB_PACING of the run. Backlogs:
- export, chain, reconcile: the seeded ledger transactions (bench/erp_export.py's seed,
  at bulk speed through the ledger's own tables and triggers), seeded once. Each export
  run has an ERP stream of its own, opened before the seed (the batch ids name the
  stream, so no run's batches are another's), delivering to a receiver that keeps totals
  only. The chain's links and the reconciliation checkpoint are put back (as the
  superuser, the guards' triggers off for that statement only) after each run, so the
  next run has the same backlog;
- sweep: `sweep` of the seeded transactions' events marked pending again before each run;
- expire, dormancy, migrate: their postings can't be undone, so each run seeds its own
  (lots made due by moving their expiry into the past; dormant wallets by bench/bulk.py's
  seed_dormancy; a legacy file by its write_legacy_file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.events import owner_sql
from emulators.stack import REPO, Stack

JOBS = ("export", "chain", "reconcile", "sweep", "expire", "dormancy", "migrate")
BACKUP = "bench_background"  # the superuser's copies of what a run moves, put back after it
TIMEOUT_S: float | None = None  # the longest one command may take (--job-timeout)


@dataclass
class Outcome:
    items: int = 0
    ok: bool = True
    note: str = ""
    pacing: dict[str, Any] = field(default_factory=dict)  # the job's own pacing report (its last run)


@dataclass
class Sizes:
    events: int
    sweep: int
    lots: int
    wallets: int
    dormant: int
    rows: int


def cli(stack: Stack, args: list[str], pacing: str, operator: bool, extra: dict[str, str] | None = None) -> Any:
    """One command as the operator runs it; its exit code, stdout and stderr."""
    login = stack.operator_env() if operator else stack.in_process_env()
    env = {**os.environ, **login, "LEDGER_JOB_PACING": pacing, "PYTHONPATH": str(REPO), **(extra or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=TIMEOUT_S
    )


def _json(text: str) -> Any:
    """The last JSON document of a command's output (pretty-printed or one line)."""
    text = text.strip()
    for start in [i for i, c in enumerate(text) if c in "{[" and (i == 0 or text[i - 1] == "\n")][::-1]:
        try:
            return json.loads(text[start:])
        except ValueError:
            continue
    raise ValueError(f"no JSON in {text[-500:]!r}")


@dataclass
class Ledger:
    """The state the jobs share: the seeded range, ERP streams, the chain's head before
    the seed, and the per-run assets."""

    stack: Stack
    sizes: Sizes
    receiver_url: str = ""
    streams: list[str] = field(default_factory=list)
    seeded: tuple[int, int] = (0, 0)
    chain_head: int = 0
    seeded_xact: str = "0"  # the last seeded transaction's created_xact: with seeded[1], its place in commit order
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    workdir: Path = Path()

    def superuser(self, sql: str) -> None:
        self.stack.psql(sql, "ledger")


def prepare(ledger: Ledger, runs: int, echo: Callable[[str], None], catch_up: bool = True) -> dict[str, float]:
    """Before the seed: the chain and the reconciliation caught up (if `catch_up`: their
    runs' backlog is then the seed alone; minutes after an earlier run's seed), `runs`
    ERP streams opened; then the seed. Returns seconds taken by each step."""
    from bench import erp_export
    from bench.setup import empty_erp_stream

    stack, took = ledger.stack, {}
    started = time.monotonic()
    for args in (["-m", "common.chain", "extend"], ["-m", "common.reconcile"]) if catch_up else ():
        done = cli(stack, args, "off", operator=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} before the seed failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    if catch_up:
        took["catch up chain and reconciliation"] = time.monotonic() - started
    ledger.chain_head = int(owner_sql(stack, "SELECT coalesce(max(position), 0) FROM ledger.chain_links")[0][0])
    ledger.streams = [empty_erp_stream(stack) for _ in range(runs)]
    tables = ("reconciliation_checkpoint", "reconciliation_asset_totals", "reconciliation_system_totals")
    ledger.superuser(
        f"CREATE SCHEMA IF NOT EXISTS {BACKUP};"
        + "".join(f"DROP TABLE IF EXISTS {BACKUP}.{t}; CREATE TABLE {BACKUP}.{t} AS TABLE ledger.{t};" for t in tables)
    )
    first = int(owner_sql(stack, "SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0])
    echo(f"  seeding {ledger.sizes.events:,} ledger transactions ...")
    started = time.monotonic()
    erp_export.seed(stack, ledger.sizes.events)
    took[f"seed {ledger.sizes.events:,} transactions"] = time.monotonic() - started
    last = int(owner_sql(stack, "SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0])
    ledger.seeded = (first + 1, last)
    ledger.seeded_xact = str(
        owner_sql(stack, "SELECT created_xact::text FROM ledger.transactions WHERE id = :i", i=last)[0][0]
    )
    return took


def _behind(ledger: Ledger, position_sql: str, **params: object) -> bool:
    """Whether the position `position_sql` reads ((xact, id) in commit order) is still
    before the last seeded transaction: checked apart from what the job reports."""
    found = owner_sql(
        ledger.stack,
        f"SELECT p.x::text::xid8 < CAST(:xact AS xid8) OR (p.x::text::xid8 = CAST(:xact AS xid8) AND p.i < :last)"
        f" FROM ({position_sql}) AS p(x, i)",
        xact=ledger.seeded_xact,
        last=ledger.seeded[1],
        **params,
    )
    return not found or bool(found[0][0])


def _checked(items: int, behind: bool, report: Any) -> Outcome:
    if behind:
        return Outcome(items, False, f"the seeded backlog is not cleared; the job reported {json.dumps(report)[:300]}")
    return Outcome(items)


# --- each job: seed its run's backlog (returns its size), run it, undo what it moved ---


def _export(ledger: Ledger, pacing: str, run: int) -> Outcome:
    extra = {"LEDGER_ERP_STREAM": ledger.streams[run], "LEDGER_ERP_URL": ledger.receiver_url}
    done = cli(ledger.stack, ["-m", "common.ops", "export", "--until-caught-up"], pacing, operator=True, extra=extra)
    if done.returncode != 0:
        return Outcome(0, False, f"ops export exited {done.returncode}: {done.stderr[-300:]}")
    report = _json(done.stdout)
    behind = _behind(ledger, "SELECT after_xact, after_id FROM erp.cursors WHERE name = :s", s=ledger.streams[run])
    return _checked(int(report["events_all_passes"]), behind, report)


def _chain(ledger: Ledger, pacing: str, run: int) -> Outcome:
    done = cli(ledger.stack, ["-m", "common.chain", "extend"], pacing, operator=True)
    if done.returncode != 0:
        return Outcome(0, False, f"chain extend exited {done.returncode}: {done.stderr[-300:]}")
    report = _json(done.stdout)
    behind = _behind(
        ledger, "SELECT created_xact, transaction_id FROM ledger.chain_links ORDER BY position DESC LIMIT 1"
    )
    return _checked(int(report["linked"]), behind, report)


def _chain_undo(ledger: Ledger) -> None:
    ledger.superuser(
        "BEGIN; SET LOCAL session_replication_role = replica;"
        f" DELETE FROM ledger.chain_links WHERE position > {ledger.chain_head}; COMMIT;"
    )


def _reconcile(ledger: Ledger, pacing: str, run: int) -> Outcome:
    done = cli(ledger.stack, ["-m", "common.reconcile"], pacing, operator=True)
    if done.returncode != 0:
        return Outcome(0, False, f"reconcile exited {done.returncode}: {done.stdout[-300:]}")
    report = _json(done.stdout)
    behind = _behind(ledger, "SELECT after_xact, after_id FROM ledger.reconciliation_checkpoint")
    return _checked(int(report["horizon"]["transactions_passed"]), behind, {"horizon": report["horizon"]})


def _reconcile_undo(ledger: Ledger) -> None:
    tables = ("reconciliation_checkpoint", "reconciliation_asset_totals", "reconciliation_system_totals")
    ledger.superuser(
        "BEGIN; SET LOCAL session_replication_role = replica;"
        + "".join(f" DELETE FROM ledger.{t}; INSERT INTO ledger.{t} SELECT * FROM {BACKUP}.{t};" for t in tables)
        + " COMMIT;"
    )


def _sweep_range(ledger: Ledger) -> tuple[int, int]:
    first = ledger.seeded[0]
    return first, min(ledger.seeded[1], first + ledger.sizes.sweep - 1)


def _sweep_seed(ledger: Ledger, run: int) -> int:
    lo, hi = _sweep_range(ledger)
    owner_sql(
        ledger.stack,
        "UPDATE ledger.outbox SET published_at = NULL, attempts = 0, last_error = NULL"
        " WHERE transaction_id BETWEEN :lo AND :hi",
        lo=lo,
        hi=hi,
    )
    return hi - lo + 1


def _sweep(ledger: Ledger, pacing: str, run: int) -> Outcome:
    lo, hi, outcome = *_sweep_range(ledger), Outcome()
    pending = "SELECT count(*) FROM ledger.outbox WHERE transaction_id BETWEEN :lo AND :hi AND published_at IS NULL"
    for _ in range(20):  # it exits 1 while any event is pending, the live traffic's newest too
        done = cli(ledger.stack, ["-m", "common.ops", "sweep"], pacing, operator=True)
        try:
            report = _json(done.stdout)
            outcome.items += int(report["published"])
            outcome.pacing = report.get("pacing", {})
        except (ValueError, KeyError):
            return Outcome(outcome.items, False, f"ops sweep exited {done.returncode}: {done.stderr[-300:]}")
        if not owner_sql(ledger.stack, pending, lo=lo, hi=hi)[0][0]:
            return outcome
    return Outcome(outcome.items, False, "the backlog still pending after 20 sweeps")


def _asset_code(ledger: Ledger, job: str, run: int) -> str:
    return f"BG{job[:3].upper()}{ledger.tag.upper()}{run}"


def _asset(ledger: Ledger, job: str, run: int) -> str:
    code = _asset_code(ledger, job, run)
    owner_sql(ledger.stack, "SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'background jobs benchmark')", a=code)
    return code


def _expire_seed(ledger: Ledger, run: int) -> int:
    """`lots` bonus lots over a tenth as many wallets of an asset of the run's own, then
    made due: their expiry moved into the past (as the owner; lots have no guard)."""
    asset, lots = _asset(ledger, "expire", run), ledger.sizes.lots
    stack = ledger.stack
    owner_sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT :p || g, :a FROM generate_series(1, :n) g",
        p=f"bg-lots-{ledger.tag}-{run}-",
        a=asset,
        n=max(1, lots // 10),
    )
    promotion = owner_sql(
        stack,
        "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'promotion' AND asset_code = :a",
        a=asset,
    )[0][0]
    wallets = [
        r[0]
        for r in owner_sql(stack, "SELECT id FROM ledger.wallets WHERE asset_code = :a AND kind = 'customer'", a=asset)
    ]
    for start in range(0, lots, 10_000):
        owner_sql(
            stack,
            "SELECT ledger.commit_posting(:k || g, 'bench-setup', 'bonus', :a, 100, w, NULL, ARRAY[:p, w],"
            " ARRAY[-100, 100]::bigint[], 'bg-campaign', p_lot_expires_at => now() + interval '1 day')"
            " FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) g,"
            " LATERAL (SELECT (CAST(:ws AS bigint[]))[1 + g % :n] AS w) x",
            k=f"bg-lot-{ledger.tag}-{run}-",
            a=asset,
            p=promotion,
            ws=wallets,
            n=len(wallets),
            lo=start,
            hi=min(lots, start + 10_000) - 1,
        )
    owner_sql(
        stack,
        "UPDATE ledger.lots l SET expires_at = now() - interval '1 minute' FROM ledger.wallets w"
        " WHERE w.id = l.wallet_id AND w.asset_code = :a",
        a=asset,
    )
    owner_sql(stack, "ANALYZE ledger.lots")
    return lots


def _expire(ledger: Ledger, pacing: str, run: int) -> Outcome:
    outcome = Outcome()
    for _ in range(20):  # it exits 1 when a lot failed or its wallet was busy: those are due still
        done = cli(ledger.stack, ["-m", "common.ops", "expire"], pacing, operator=True)
        try:
            report = _json(done.stdout)
        except ValueError:
            return Outcome(outcome.items, False, f"ops expire exited {done.returncode}: {done.stderr[-300:]}")
        due = owner_sql(
            ledger.stack,
            "SELECT count(*) FROM ledger.lots l JOIN ledger.wallets w ON w.id = l.wallet_id"
            " WHERE w.asset_code = :a AND l.remaining > 0 AND l.expires_at < now()",
            a=_asset_code(ledger, "expire", run),
        )[0][0]
        if not due:  # items: lots cleared (the report counts postings, which may empty several lots)
            return Outcome(ledger.sizes.lots, pacing=report.get("pacing", {}))
    return Outcome(outcome.items, False, f"{due:,} lots still due after 20 runs: {report}")


def _dormancy_seed(ledger: Ledger, run: int) -> int:
    from bench.bulk import seed_dormancy

    seed_dormancy(ledger.stack, _asset_code(ledger, "dormancy", run), ledger.sizes.wallets, ledger.sizes.dormant)
    return ledger.sizes.dormant


def _dormancy(ledger: Ledger, pacing: str, run: int) -> Outcome:
    outcome = Outcome()
    for _ in range(50):  # `run` until a run warns, marks and sweeps nobody
        done = cli(ledger.stack, ["-m", "common.dormancy", "run"], pacing, operator=False)
        if done.returncode != 0:
            return Outcome(outcome.items, False, f"dormancy run exited {done.returncode}: {done.stderr[-300:]}")
        summary = json.loads(done.stderr.strip().splitlines()[-1])
        outcome.items += int(summary.get("swept", 0))
        if summary.get("failed"):
            outcome.ok, outcome.note = False, f"{summary['failed']} failed"
        if not any(summary.get(k) for k in ("warned", "marked", "swept")):
            funded = owner_sql(
                ledger.stack,
                "SELECT count(*) FROM ledger.wallets WHERE asset_code = :a AND kind = 'customer' AND balance > 0"
                " AND last_activity_at < now() - interval '365 days'",
                a=_asset_code(ledger, "dormancy", run),
            )[0][0]
            if funded:
                return Outcome(outcome.items, False, f"{funded:,} dormant wallets still funded after a run found none")
            return outcome
    return Outcome(outcome.items, False, "still due after 50 runs")


def _migrate_file(ledger: Ledger, run: int) -> Path:
    return ledger.workdir / f"legacy-{run}.csv"


def _migrate_seed(ledger: Ledger, run: int) -> int:
    from bench.bulk import write_legacy_file

    asset = _asset(ledger, "migrate", run)
    write_legacy_file(_migrate_file(ledger, run), ledger.sizes.rows, asset, f"bg-legacy-{ledger.tag}-{run}")
    return ledger.sizes.rows


def _migrate(ledger: Ledger, pacing: str, run: int) -> Outcome:
    args = [
        "-m",
        "common.migrate",
        "import",
        str(_migrate_file(ledger, run)),
        "--migration-id",
        f"bg-{ledger.tag}-{run}",
    ]
    done = cli(ledger.stack, args, pacing, operator=False)
    if done.returncode != 0:
        return Outcome(0, False, f"import exited {done.returncode}: {done.stderr[-300:]}")
    report = _json(done.stdout)
    return Outcome(ledger.sizes.rows, bool(report.get("ok")), "" if report.get("ok") else "does not reconcile")


@dataclass(frozen=True)
class Job:
    name: str
    seed: Callable[[Ledger, int], int]  # the run's backlog, made before its quiet window
    run: Callable[[Ledger, str, int], Outcome]
    undo: Callable[[Ledger], None] = lambda ledger: None


def jobs() -> dict[str, Job]:
    events = lambda ledger, run: ledger.sizes.events  # noqa: E731 - seeded once, by prepare()
    return {
        "export": Job("export", events, _export),
        "chain": Job("chain", events, _chain, _chain_undo),
        "reconcile": Job("reconcile", events, _reconcile, _reconcile_undo),
        "sweep": Job("sweep", _sweep_seed, _sweep),
        "expire": Job("expire", _expire_seed, _expire),
        "dormancy": Job("dormancy", _dormancy_seed, _dormancy),
        "migrate": Job("migrate", _migrate_seed, _migrate),
    }
