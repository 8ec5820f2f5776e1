"""`python -m bench.imports`: what importing each library costs a function's cold start.

Most of a cold start is imports, and several choices in common/ (a dataclass for the
settings, a hand-written pool, lazy adapters, models built on
first use, no TLS probe) weigh one library's import against another. Their comments
point here instead of quoting figures that go stale.

Each row runs in its own fresh interpreter, so a module pays for everything it pulls
in, as in a function that imports nothing else; the figure is the median over
`--runs` interpreters (after one unmeasured run that writes the bytecode caches).
Writes bench/results/imports.md.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "imports.md"

# (what is measured, the code that does it, the module that must be installed, who cites it)
IMPORTS = [
    ("functions_framework", "import functions_framework", "functions_framework", "every function"),
    ("pydantic", "import pydantic", "pydantic", "common/http.py, common/ledger/commands.py"),
    ("pg8000.native", "import pg8000.native", "pg8000", "common/bootstrap.py"),
    (
        "common.adapters.postgres (the pool, with pg8000 and tenacity)",
        "import common.adapters.postgres",
        "pg8000",
        "common/adapters/postgres.py",
    ),
    ("sqlalchemy (its pool was the alternative)", "import sqlalchemy", "sqlalchemy", "common/adapters/postgres.py"),
    ("pydantic_settings", "import pydantic_settings", "pydantic_settings", "common/config.py"),
    ("redis", "import redis", "redis", "common/bootstrap.py (locks, rate limits)"),
    (
        "google-auth's ID-token verification, with its urllib3 transport",
        "from google.oauth2 import id_token\nimport google.auth.transport.urllib3",
        "google.oauth2",
        "common/auth/tokens.py",
    ),
    (
        "opentelemetry.sdk.metrics (what redis 7.2 loads when installed)",
        "import opentelemetry.sdk.metrics",
        "opentelemetry.sdk",
        "common/requirements.txt",
    ),
    ("google.cloud.pubsub_v1", "from google.cloud import pubsub_v1", "google.cloud.pubsub_v1", "common/bootstrap.py"),
    (
        "google.cloud.sql.connector",
        "import google.cloud.sql.connector",
        "google.cloud.sql.connector",
        "common/bootstrap.py",
    ),
    (
        "google.cloud.firestore",
        "import google.cloud.firestore",
        "google.cloud.firestore",
        "common/adapters/firestore_idempotency.py",
    ),
]
# Not imports, measured the same way: work a cold start would do on its first request.
FIRST_USE = [
    (
        "every command model's validator, built at once",
        "import pydantic, time\n"
        "from common.ledger import commands\n"
        "models = [m for m in vars(commands).values() if isinstance(m, type)"
        " and issubclass(m, pydantic.BaseModel) and m.__module__ == commands.__name__]\n"
        "t = time.perf_counter()\n"
        "for model in models: model.model_rebuild(force=True)\n",
        "pydantic",
        "common/ledger/commands.py",
    ),
    (
        "verifying one RS256 ID token with google-auth (its key given: the signature alone)",
        "from google.auth import crypt, jwt\n"
        "from cryptography.hazmat.primitives.asymmetric import rsa\n"
        "from cryptography.hazmat.primitives import serialization\n"
        "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
        "pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,"
        " serialization.NoEncryption()).decode()\n"
        "public = key.public_key().public_bytes(serialization.Encoding.PEM,"
        " serialization.PublicFormat.SubjectPublicKeyInfo).decode()\n"
        "token = jwt.encode(crypt.RSASigner.from_string(pem, 'k'), {'iss': 'i', 'sub': 's', 'aud': 'a',"
        " 'iat': int(time.time()), 'exp': int(time.time()) + 60})\n"
        "t = time.perf_counter()\n"
        "jwt.decode(token, certs={'k': public}, audience='a')\n",
        "google.auth",
        "common/auth/tokens.py",
    ),
    (
        "a TLS context, as pg8000 builds one per connect under sslmode=prefer",
        "import ssl, time\nt = time.perf_counter()\nssl.create_default_context()\n",
        "ssl",
        "common/bootstrap.py",
    ),
]


def _once(code: str) -> float:
    """Milliseconds `code` takes in a fresh interpreter. Code that sets `t` itself is
    timed from there (its setup excluded); other code is timed whole."""
    probe = "import time\nt = time.perf_counter()\n" + code + "\nprint((time.perf_counter() - t) * 1000)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def _row(label: str, code: str, needs: str, cited_by: str, runs: int) -> str:
    if _missing(needs):
        return f"| {label} | not installed | | {cited_by} |"
    _once(code)  # bytecode caches
    samples = [_once(code) for _ in range(runs)]
    return f"| {label} | {statistics.median(samples):.1f} | {min(samples):.1f} | {cited_by} |"


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


@click.command()
@click.option("--runs", default=7, show_default=True, help="Fresh interpreters per row.")
def main(runs: int) -> None:
    header = ["| what | median ms | best ms | cited by |", "|---|---:|---:|---|"]
    sections = []
    for title, rows in (("Imports", IMPORTS), ("First use", FIRST_USE)):
        click.echo(f"  {title.lower()} ...", err=True)
        table = header + [_row(*row, runs=runs) for row in rows]
        sections.append(f"## {title}\n\n" + "\n".join(table))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cores"
    text = (
        "# Import costs\n\n"
        f"{when}; {machine}, Python {platform.python_version()}; `python -m bench.imports --runs {runs}`: "
        "each row in its own fresh interpreter, so a module pays for all it pulls in; "
        "the median and the best of the runs.\n\n" + "\n\n".join(sections) + "\n"
    )
    RESULT.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
