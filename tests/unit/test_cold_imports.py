"""Nothing heavy at import time: a function's module must not pull in database, Redis,
Firestore or Cloud SQL connector clients until a request needs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ["pg8000", "redis", "google.cloud.firestore", "google.cloud.pubsub", "google.cloud.sql.connector", "grpc"]


def heavy_modules_loaded_by(code: str) -> list[str]:
    """Which HEAVY modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name", ["topup", "bonus", "usage", "transfer", "void", "wallets", "access", "erp_export", "actions"]
)
def test_importing_a_function_loads_no_client_library(name):
    loader = (
        f"import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('fn', r'{REPO / 'functions' / name / 'main.py'}')\n"
        f"spec.loader.exec_module(importlib.util.module_from_spec(spec))"
    )
    assert heavy_modules_loaded_by(loader) == []


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
