"""What the local stack needs from the machine, checked before anything starts.

PostgreSQL server binaries (15 to 17), a Java runtime of at least 17 (the emulators are
JVM programs), redis-server, and the Google Cloud CLI's Firestore and Pub/Sub emulators.
Debian packages the first three, so `make dev` and `make test` install them with apt-get
(as root, or through `sudo -n`). The emulators come from Google's apt repository or from
`gcloud components`, which this machine may not be set up for, so for them the check
only says how. Every missing piece is reported in one message, and nothing is started
until none is missing.

A cluster can only be started by its own major version: an existing data directory
gets the binaries named by its PG_VERSION; a new one, the version Cloud SQL runs
(infra/terraform/database.tf) when it is installed, else the newest supported one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# in order of preference for a new cluster: the version Cloud SQL runs, then the newest
SUPPORTED_POSTGRES = (15, 17, 16)
POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql", "pg_isready")
MIN_JAVA = 17
GCLOUD_SDK = Path("/usr/lib/google-cloud-sdk")
EMULATOR_SOURCE = "Google's apt repository, https://cloud.google.com/sdk/docs/install#deb"


class PrerequisitesMissing(RuntimeError):
    """The machine lacks something the stack needs; the message says what and how to get it."""


@dataclass(frozen=True)
class Missing:
    what: str
    packages: tuple[str, ...] = ()  # Debian packages that provide it, installed with apt-get
    google_packages: tuple[str, ...] = ()  # packages from Google's apt repository
    components: tuple[str, ...] = ()  # or the gcloud components
    how: str = ""  # when no package helps


# Finding each piece ------------------------------------------------------------


def postgres_bin(data_dir: Path | None = None, root: Path = POSTGRES_ROOT) -> Path:
    """The PostgreSQL binaries for the cluster in `data_dir` (made or to be made)."""
    found, missing = _postgres(data_dir, root)
    if missing is not None:
        raise PrerequisitesMissing(report([missing]))
    assert found is not None
    return found


def cluster_major(data_dir: Path | None) -> int | None:
    """The major version that made the cluster in `data_dir`, or None if there is none."""
    try:
        return int((data_dir / "PG_VERSION").read_text().strip()) if data_dir else None
    except (FileNotFoundError, ValueError):
        return None


def _postgres(data_dir: Path | None, root: Path) -> tuple[Path | None, Missing | None]:
    override = os.environ.get("LEDGER_PG_BIN")
    if override:
        if _has_programs(Path(override)):
            return Path(override), None
        return None, Missing(
            f"PostgreSQL server binaries in LEDGER_PG_BIN={override} ({', '.join(POSTGRES_PROGRAMS)})",
            how="point LEDGER_PG_BIN at a PostgreSQL bin directory, or unset it",
        )
    major = cluster_major(data_dir)
    if major is not None:
        if _has_programs(root / str(major) / "bin"):
            return root / str(major) / "bin", None
        return None, Missing(
            f"PostgreSQL {major} server binaries, for the existing cluster in {data_dir}",
            packages=(f"postgresql-{major}",) if major in SUPPORTED_POSTGRES else (),
            how=f"a cluster only starts with its own major version: or delete {data_dir} for a new cluster",
        )
    for major in SUPPORTED_POSTGRES:
        if _has_programs(root / str(major) / "bin"):
            return root / str(major) / "bin", None
    versions = ", ".join(str(v) for v in sorted(SUPPORTED_POSTGRES))
    return None, Missing(f"PostgreSQL server binaries, version {versions} (in {root}/VERSION/bin)", ("postgresql",))


def _has_programs(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / program, os.X_OK) for program in POSTGRES_PROGRAMS)


def java_major(java: str) -> int | None:
    """The major version of the Java runtime `java`, from its release file or -version."""
    release = Path(java).resolve().parent.parent / "release"
    try:
        text = release.read_text()
    except OSError:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
        text = result.stderr + result.stdout
    match = re.search(r'version\s*=?\s*"(?:1\.)?(\d+)', text, re.IGNORECASE)
    return int(match.group(1)) if match else None


def _java() -> Missing | None:
    java = shutil.which("java")
    major = java_major(java) if java else None
    if major is not None and major >= MIN_JAVA:
        return None
    found = f" (found {java}, Java {major})" if java else ""
    return Missing(f"a Java runtime, version {MIN_JAVA} or newer, for the emulators{found}", ("default-jre-headless",))


def gcloud_platform() -> Path:
    """The Google Cloud SDK's platform/ folder: LEDGER_GCLOUD_PLATFORM, else the SDK of the
    `gcloud` on PATH, else Debian's."""
    if os.environ.get("LEDGER_GCLOUD_PLATFORM"):
        return Path(os.environ["LEDGER_GCLOUD_PLATFORM"])
    gcloud = shutil.which("gcloud")
    sdk = Path(gcloud).resolve().parent.parent if gcloud else GCLOUD_SDK
    return sdk / "platform"


def firestore_bin() -> Path:
    return gcloud_platform() / "cloud-firestore-emulator" / "cloud_firestore_emulator"


def pubsub_bin() -> Path:
    return gcloud_platform() / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"


def _emulators() -> list[Missing]:
    emulators = [
        ("Firestore", firestore_bin(), "google-cloud-cli-firestore-emulator", "cloud-firestore-emulator"),
        ("Pub/Sub", pubsub_bin(), "google-cloud-cli-pubsub-emulator", "pubsub-emulator"),
    ]
    return [
        Missing(f"the {name} emulator ({path})", google_packages=(package,), components=(component,))
        for name, path, package, component in emulators
        if not os.access(path, os.X_OK)
    ]


# Checking, installing, reporting ---------------------------------------------------


def check(data_dir: Path | None) -> list[Missing]:
    """Every piece the stack lacks (an empty list when it has them all)."""
    missing = [_postgres(data_dir, POSTGRES_ROOT)[1], _java()]
    if shutil.which("redis-server") is None:
        missing.append(Missing("redis-server", ("redis-server",)))
    return [m for m in missing if m is not None] + _emulators()


def ensure(data_dir: Path | None, install: bool = True) -> None:
    """Install what Debian packages, then raise PrerequisitesMissing if anything is still missing."""
    missing = check(data_dir)
    packages = [package for piece in missing for package in piece.packages]
    not_installed = "not run: --no-install"
    if packages and install:
        not_installed = apt_install(packages) or "apt-get ran, yet these are still missing"
        missing = check(data_dir)
    if missing:
        raise PrerequisitesMissing(report(missing, not_installed))


def apt_install(packages: list[str]) -> str:
    """apt-get install `packages`; returns "" when it ran, else why it could not."""
    prefix = _privilege()
    if prefix is None:
        return "not run: not root, and no sudo -n"
    if shutil.which("apt-get") is None:
        return "not run: no apt-get on this machine"
    print(f"Installing {' '.join(packages)} with apt-get ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            [*prefix, "apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL
        )
    except subprocess.CalledProcessError as error:
        return f"apt-get failed, exit {error.returncode}"
    return ""


def can_install() -> bool:
    return _privilege() is not None and shutil.which("apt-get") is not None


def _privilege() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def report(missing: list[Missing], not_installed: str = "") -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    lines = ["The local stack needs what this machine lacks:", *(f"  - {piece.what}" for piece in missing)]
    packages = [p for piece in missing for p in piece.packages]
    google = [p for piece in missing for p in piece.google_packages]
    components = [c for piece in missing for c in piece.components]
    if packages or google or any(piece.how for piece in missing):
        lines.append("To get them:")
    if packages:
        why = f"  ({not_installed})" if not_installed else ""
        lines.append(f"  {sudo}apt-get install -y {' '.join(packages)}{why}")
    if google:
        lines.append(f"  {sudo}apt-get install -y {' '.join(google)}  (from {EMULATOR_SOURCE})")
        lines.append(f"    or: gcloud components install {' '.join(components)}")
        lines.append("    or: set LEDGER_GCLOUD_PLATFORM to the platform/ folder of a Google Cloud SDK that has them")
    lines += [f"  {piece.how}" for piece in missing if piece.how]
    return "\n".join(lines)
