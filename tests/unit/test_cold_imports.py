"""Nothing heavy at import time: a function's module must not pull in database, Redis,
Firestore or Cloud SQL connector clients until a request needs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ["pg8000", "redis", "google.cloud.firestore", "google.cloud.pubsub", "google.cloud.sql.connector", "grpc"]


@pytest.mark.parametrize("name", ["topup", "bonus", "usage", "transfer", "void", "wallets", "erp_export"])
def test_importing_a_function_loads_no_client_library(name):
    probe = (
        f"import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('fn', r'{REPO / 'functions' / name / 'main.py'}')\n"
        f"spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
