"""Nothing heavy at import time: a function's module must not pull in database, Redis,
Firestore or Cloud SQL connector clients until a request needs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = [
    "pg8000",
    "redis",
    "google.cloud.firestore",
    "google.cloud.pubsub",
    "google.cloud.pubsub_v1",
    "google.cloud.sql.connector",
    "grpc",
]


def heavy_modules_loaded_by(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Which HEAVY modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})},
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def loader(name: str) -> str:
    return (
        f"import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('fn', r'{REPO / 'functions' / name / 'main.py'}')\n"
        f"spec.loader.exec_module(importlib.util.module_from_spec(spec))"
    )


@pytest.mark.parametrize(
    "name", ["topup", "bonus", "usage", "transfer", "void", "wallets", "access", "erp_export", "actions"]
)
def test_importing_a_function_loads_no_client_library(name):
    assert heavy_modules_loaded_by(loader(name)) == []


# no emulator listens there: building a client must not connect
NOWHERE = {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "PUBSUB_EMULATOR_HOST": "127.0.0.1:9", "LEDGER_DB_PORT": "9"}


def test_a_warm_up_on_start_builds_a_money_functions_clients_when_it_starts():
    """Settings.warm_up_on_start (a minimum instance in Google Cloud): the clients its
    first request would build are built at start, connecting nowhere."""
    loaded = heavy_modules_loaded_by(loader("topup"), {**NOWHERE, "LEDGER_WARM_UP_ON_START": "true"})
    assert {"pg8000", "redis", "google.cloud.firestore", "google.cloud.pubsub_v1", "grpc"} <= set(loaded)


def test_a_warm_up_on_start_builds_a_reads_clients_but_not_the_money_ones():
    loaded = heavy_modules_loaded_by(loader("wallets"), {**NOWHERE, "LEDGER_WARM_UP_ON_START": "true"})
    assert {"pg8000", "redis"} <= set(loaded) and "google.cloud.firestore" not in loaded


def test_the_service_layer_loads_no_client_library():
    """Reads and non-usage actions never pay for Redis: adapters load with their clients."""
    assert heavy_modules_loaded_by("import common.service, common.bootstrap, common.config") == []


def test_a_read_loads_no_firestore_only_the_idempotency_store_does():
    """google-cloud-firestore comes with the first money request (the idempotency store),
    never with a read, and building the store connects nowhere."""
    assert "google.cloud.firestore" not in heavy_modules_loaded_by("from common import bootstrap\nbootstrap.service()")
    build = (
        "import os\nos.environ['FIRESTORE_EMULATOR_HOST'] = '127.0.0.1:9'\n"
        "from common import bootstrap\nbootstrap.idempotency()"
    )
    assert "google.cloud.firestore" in heavy_modules_loaded_by(build)


@pytest.mark.parametrize("name", ["topup", "usage", "void", "access", "bonus"])
def test_a_function_without_the_cursor_key_starts_warmed_up_in_google_cloud(name):
    """Only the wallets function pages history, so only it is given LEDGER_CURSOR_KEY;
    the others build the service at start (warm-up) without ever needing the key, even
    in Google Cloud, where building the cursors without it refuses."""
    cloud = {**NOWHERE, "K_SERVICE": name, "LEDGER_WARM_UP_ON_START": "true"}
    assert "pg8000" in heavy_modules_loaded_by(loader(name), cloud)


def test_a_warm_up_that_fails_is_logged_and_left_to_the_first_request():
    """A client that can't be built at start (here, a malformed Redis URL) must not stop
    the instance from starting: the first request builds it, or answers 503."""
    probe = subprocess.run(
        [sys.executable, "-c", loader("topup") + "\nprint('started')"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            "PYTHONPATH": str(REPO),
            "PATH": "/usr/bin:/bin",
            **NOWHERE,
            "LEDGER_WARM_UP_ON_START": "true",
            "LEDGER_REDIS_URL": "nowhere://redis",
        },
    )
    assert probe.returncode == 0 and probe.stdout.strip().endswith("started"), probe.stderr[-2000:]
    assert "warm-up on start failed" in probe.stdout + probe.stderr
