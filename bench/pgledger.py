"""pgledger side by side: installed in a database of its own on the stack's Postgres,
from the anchor's SQL files read where they are (../shared/anchors/pgledger beside the
repository, or LEDGER_PGLEDGER_DIR), and driven by its own pgbench scripts.

Nothing of pgledger is copied into this repository: it is a yardstick, not our code,
and its licence stays with it in the anchor's directory."""

from __future__ import annotations

import os
from pathlib import Path

from bench.pgbench import run_script
from bench.runner import Result
from emulators import logins
from emulators.stack import Stack

DATABASE = "pgledger"
ACCOUNTS = 10_000  # pgledger_bench_setup.sql's user accounts, plus one treasury
INSTALL = ("ulid-to-uuid.sql", "uuid-to-ulid.sql", "pgledger.sql", "pgledger_bench_setup.sql")


# where the anchor may be: beside the repository (../shared, as the project's checkout
# has it), or this machine's shared folder when the repository is a clone elsewhere (CI)
_PLACES = (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))


def anchor_dir() -> Path:
    if "LEDGER_PGLEDGER_DIR" in os.environ:
        return Path(os.environ["LEDGER_PGLEDGER_DIR"])
    found = [place / "anchors" / "pgledger" for place in _PLACES if (place / "anchors" / "pgledger").is_dir()]
    return found[0] if found else _PLACES[0] / "anchors" / "pgledger"


def available() -> bool:
    return all((anchor_dir() / name).is_file() for name in INSTALL)


UNIFORM = ("pgledger: uniform transfer", anchor_dir() / "pgledger_uniform.pgbench")
HOT = ("pgledger: hot treasury", anchor_dir() / "pgledger_hot.pgbench")


def install(stack: Stack) -> None:
    """Create the pgledger database, owned by the ledger's owner, and install pgledger
    with its bench fixture in README order; a database already holding the full fixture
    is kept as it is (its tables stay warm between runs)."""
    if not available():
        raise SystemExit(f"pgledger's anchor is not at {anchor_dir()} (set LEDGER_PGLEDGER_DIR)")
    if not stack.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'").strip():
        stack.psql(f"CREATE DATABASE {DATABASE} OWNER {logins.OWNER}")
    installed = stack.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'bench_acct'", database=DATABASE).strip()
    if installed == "1" and stack.psql("SELECT count(*) FROM bench_acct", database=DATABASE).strip() == str(
        ACCOUNTS + 1
    ):
        return
    # a half-made install (interrupted) starts again from an empty database
    stack.psql(f"DROP DATABASE {DATABASE}")
    stack.psql(f"CREATE DATABASE {DATABASE} OWNER {logins.OWNER}")
    sql = "\n".join((anchor_dir() / name).read_text() for name in INSTALL)
    stack.psql(f"SET ROLE {logins.OWNER};\n{sql}", database=DATABASE)


def run(stack: Stack, script: tuple[str, Path], clients: int, duration_s: float, warmup_s: int = 2) -> Result:
    """pgledger's transfers per second with one of its scripts (UNIFORM, HOT)."""
    return run_script(stack, script, clients, duration_s, warmup_s, database=DATABASE)
