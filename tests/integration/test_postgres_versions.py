"""The ledger on every PostgreSQL version from 15 to 17 that this machine's package
sources offer (or that is installed): for each, a throw-away cluster made as the local
stack makes its own, the migrations, one top-up through ledger.commit_posting() and the
invariant check. A version offered but not installed is installed with apt-get. The
versions tested are listed at the end of the run."""

import re
import shutil
import subprocess

import pytest

from emulators import database
from emulators.prerequisites import POSTGRES_ROOT, SUPPORTED_POSTGRES, apt_install, can_install
from emulators.stack import Stack
from tests.support import assert_invariants, balance, ensure_asset, new_wallet, sql

# A port in the test stack's own reserved block that none of its services takes (they use
# +0..+4 and +10 on), so a throw-away cluster never lands on another stack's port.
PORT_OFFSET = 9


def installed(major: int) -> bool:
    return (POSTGRES_ROOT / str(major) / "bin" / "initdb").exists()


def offered() -> set[int]:
    """The supported majors apt-get could install (`apt-cache policy` has a candidate)."""
    if shutil.which("apt-cache") is None:
        return set()
    packages = [f"postgresql-{major}" for major in SUPPORTED_POSTGRES]
    out = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True).stdout
    candidates = re.findall(r"^postgresql-(\d+):\n\s+Installed: .*\n\s+Candidate: (.+)$", out, re.M)
    return {int(major) for major, candidate in candidates if candidate.strip() != "(none)"}


VERSIONS = sorted(offered() | {major for major in SUPPORTED_POSTGRES if installed(major)})


@pytest.fixture(autouse=True)
def money_invariants():
    """Each cluster here is its own and checked in its test: the test stack is not needed."""
    yield


@pytest.mark.parametrize("major", VERSIONS or [pytest.param(0, marks=pytest.mark.skip("no PostgreSQL 15-17 offered"))])
def test_the_ledger_works_on_postgres(major, tmp_path, record_property):
    if not installed(major):
        if not can_install():
            pytest.skip(f"PostgreSQL {major} is offered but not installed, and apt-get needs root or sudo")
        why_not = apt_install([f"postgresql-{major}"])
        assert not why_not, why_not
    cluster = Stack(
        f"postgres-{major}",
        port_base=Stack("test").port_base + PORT_OFFSET,
        state_dir=tmp_path / "stack",
        pg_bin_override=POSTGRES_ROOT / str(major) / "bin",
    )
    try:
        cluster.start_postgres()
        version = sql(cluster, "SHOW server_version")[0][0]
        assert version.split(".")[0] == str(major)
        database.migrate(cluster.owner_dsn())
        asset = ensure_asset(cluster, "PGV", scale=2)
        wallet = new_wallet(cluster, asset, funded=12_345)
        assert balance(cluster, wallet) == 12_345
        assert_invariants(cluster)
        record_property("postgres_version", version)
    finally:
        cluster.stop_postgres()
