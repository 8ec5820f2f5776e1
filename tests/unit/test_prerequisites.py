"""What the local stack needs from the machine: which PostgreSQL binaries it takes, how it
reads a Java version, and the one message (through the real command line) when pieces
are missing."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.prerequisites import POSTGRES_PROGRAMS, PrerequisitesMissing, java_major, postgres_bin

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("LEDGER_PG_BIN", raising=False)


def install_postgres(root: Path, *majors: int) -> None:
    for major in majors:
        bin_dir = root / str(major) / "bin"
        bin_dir.mkdir(parents=True)
        for program in POSTGRES_PROGRAMS:
            (bin_dir / program).touch(mode=0o755)


def cluster(path: Path, major: int) -> Path:
    path.mkdir(parents=True)
    (path / "PG_VERSION").write_text(f"{major}\n")
    return path


def test_a_new_cluster_gets_the_version_cloud_sql_runs_when_installed(tmp_path):
    install_postgres(tmp_path, 14, 15, 16, 17, 18)
    assert postgres_bin(tmp_path / "no-cluster-yet", root=tmp_path) == tmp_path / "15" / "bin"


def test_else_a_new_cluster_gets_the_newest_supported_postgres(tmp_path):
    install_postgres(tmp_path, 14, 16, 17, 18)
    assert postgres_bin(tmp_path / "no-cluster-yet", root=tmp_path) == tmp_path / "17" / "bin"


def test_the_preferred_version_is_the_one_terraform_deploys():
    from emulators.prerequisites import SUPPORTED_POSTGRES

    database_tf = (Path(__file__).resolve().parents[2] / "infra" / "terraform" / "database.tf").read_text()
    assert re.search(rf'database_version\s*=\s*"POSTGRES_{SUPPORTED_POSTGRES[0]}"', database_tf)


def test_an_existing_cluster_gets_its_own_major_version(tmp_path):
    install_postgres(tmp_path, 15, 17)
    assert postgres_bin(cluster(tmp_path / "data", 15), root=tmp_path) == tmp_path / "15" / "bin"


def test_an_existing_cluster_without_its_binaries_names_the_package(tmp_path):
    install_postgres(tmp_path, 15)
    with pytest.raises(PrerequisitesMissing) as missing:
        postgres_bin(cluster(tmp_path / "data", 16), root=tmp_path)
    assert "apt-get install -y postgresql-16" in str(missing.value)
    assert "only starts with its own major version" in str(missing.value)


def test_no_postgres_names_the_distributions_package(tmp_path):
    install_postgres(tmp_path, 14)
    with pytest.raises(PrerequisitesMissing, match="apt-get install -y postgresql"):
        postgres_bin(None, root=tmp_path)


def test_ledger_pg_bin_overrides_the_search(tmp_path, monkeypatch):
    install_postgres(tmp_path, 15, 16)
    monkeypatch.setenv("LEDGER_PG_BIN", str(tmp_path / "15" / "bin"))
    assert postgres_bin(None, root=tmp_path) == tmp_path / "15" / "bin"


@pytest.mark.parametrize(
    ("output", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_202"', 8), ('openjdk version "21"', 21)],
)
def test_java_version_from_java_dash_version(tmp_path, output, major):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text(f"#!/bin/sh\necho '{output}' >&2\n")
    java.chmod(0o755)
    assert java_major(str(java)) == major


def test_java_version_from_the_runtimes_release_file(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "release").write_text('IMPLEMENTOR="Debian"\nJAVA_VERSION="11.0.24"\n')
    assert java_major(str(tmp_path / "bin" / "java")) == 11


def check_in_a_bare_machine(tmp_path: Path, *args: str, path: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m emulators check` where no piece is found: PATH (no java, no redis-server,
    no gcloud), the gcloud platform folder and LEDGER_PG_BIN all point at an empty folder."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "PATH": str(path or empty),
        "HOME": str(tmp_path),
        "LEDGER_GCLOUD_PLATFORM": str(empty),
        "LEDGER_PG_BIN": str(empty),
        "LEDGER_TEST_PORT_BASE": os.environ.get("LEDGER_TEST_PORT_BASE", "54400"),
    }
    return subprocess.run(
        [sys.executable, "-m", "emulators", "--profile", "test", "check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_check_names_every_missing_piece_at_once_and_fails_without_a_traceback(tmp_path):
    result = check_in_a_bare_machine(tmp_path, "--no-install")
    empty = tmp_path / "empty"
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr
    for piece in (f"LEDGER_PG_BIN={empty}", "Java runtime", "redis-server", "Firestore emulator", "Pub/Sub emulator"):
        assert piece in message, piece
    assert "apt-get install -y default-jre-headless redis-server  (not run: --no-install)" in message
    assert "apt-get install -y google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator" in message
    assert "gcloud components install cloud-firestore-emulator pubsub-emulator" in message
    assert message.count("The local stack needs") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="as root the check runs apt-get itself (else through sudo -n)")
def test_the_check_installs_what_debian_packages_with_apt_get(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    calls = tmp_path / "apt-get.calls"
    (tools / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')  # a stand-in that installs nothing
    (tools / "apt-get").chmod(0o755)
    result = check_in_a_bare_machine(tmp_path, path=tools)
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq default-jre-headless redis-server"]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "(apt-get ran, yet these are still missing)" in result.stderr
