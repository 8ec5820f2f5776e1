"""Each function's own cold-start yardstick: the design's packages its first request uses.

`NEEDS` names, per function, the design's packages that its first request touches on
the request path; the yardstick (bench/empty_function/main.py, target `yardstick`)
imports exactly those and makes one first call to each, so a function's cold start is
compared with what the design alone costs it, not with an empty function.
`BACKGROUND` names what a first request loads off its path: a money action hands its
committed transaction to the after-commit relay's thread, which loads Pub/Sub while
the answer is already on its way (common/relay.py), so the yardstick leaves it out.

`loaded_by_first_request()` checks the tables: it serves the function in a fresh
interpreter, sends its first request and records which thread imported each package.
tests/e2e/test_cold_start.py fails when a function starts using a package its
yardstick lacks, or stops using one it has. Locally there is no Cloud SQL connector
(the stack's Postgres is reached directly); in Google Cloud the connector is on every
function's path that touches Postgres, and a yardstick there would add it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a package's name in the tables: the module whose import marks its use
PACKAGES = {
    "pydantic": "pydantic",
    "google-auth": "google.oauth2.id_token",  # the bearer token's verification, on every HTTP call
    "pg8000": "pg8000",
    "redis": "redis",
    "firestore": "google.cloud.firestore",
    "pubsub": "google.cloud.pubsub_v1",
    "sql-connector": "google.cloud.sql.connector",
}
_MONEY = ("pydantic", "google-auth", "pg8000", "redis", "firestore")
NEEDS: dict[str, tuple[str, ...]] = {
    "topup": _MONEY,
    "bonus": _MONEY,
    "usage": _MONEY,
    "transfer": _MONEY,
    "void": _MONEY,
    "addon": _MONEY,
    "allocate": _MONEY,
    "reclaim": _MONEY,
    "wallets": ("google-auth", "pg8000", "redis"),  # a read: no body to validate, no key to claim
    "erp_export": ("pg8000",),
    "outbox_sweeper": ("pg8000", "pubsub"),  # its tick publishes what the after-commit relay left
    "erp_reconcile": ("pg8000",),
    "lot_expiry": ("pg8000",),
}
# Dependencies that are not packages, whose first call a function's first request makes:
# erp_reconcile reads the ERP's booked totals over HTTP, whatever its client. Its
# yardstick makes that call with http.client (the standard library's, which the
# framework has loaded already), the least any client pays; the HTTP client we chose
# (urllib3) counts above the yardstick, as our own code. Unlike the packages, this is
# not probed in the first request (tests/e2e/test_cold_start.py); the ERP receiver's
# books show the call (the function's report names the ERP's totals).
CALLS: dict[str, tuple[str, ...]] = {"erp_reconcile": ("erp",)}
CALL_LABELS = {"erp": "the ERP's totals over HTTP"}


def first_calls(name: str) -> tuple[str, ...]:
    """What the yardstick of function `name` makes a first call to: its packages, then
    the other dependencies its first request calls."""
    return NEEDS[name] + CALLS.get(name, ())


def first_call_labels(name: str) -> str:
    return ", ".join(CALL_LABELS.get(call, call) for call in first_calls(name))


BACKGROUND: dict[str, tuple[str, ...]] = {name: ("pubsub",) for name in NEEDS if NEEDS[name] == _MONEY}
# an expiry pass posts the lots that are due, and the after-commit relay publishes their
# events off the tick's path (none when nothing is due)
BACKGROUND["lot_expiry"] = ("pubsub",)

_PROBE = r"""
import importlib.abc, json, sys, threading, time
watched = set(json.loads(sys.argv[1]))
seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in watched and name not in seen:
            seen[name] = threading.current_thread() is threading.main_thread()
        return None

sys.meta_path.insert(0, Watch())
import functions_framework
target, source, method, path, body, headers = json.loads(sys.argv[2])
client = functions_framework.create_app(target, source).test_client()
response = client.open(path, method=method, json=body, headers=headers)
time.sleep(0.5)  # what the request handed to a background thread loads meanwhile
print(json.dumps({"status": response.status_code, "body": response.get_data(as_text=True)[:300], "seen": seen}))
"""


def loaded_by_first_request(
    name: str, env: dict[str, str], request: tuple[str, str, dict | None, dict[str, str]]
) -> tuple[set[str], set[str]]:
    """(packages imported on the request's own thread, packages imported by others) when
    function `name` serves its first request, in a fresh interpreter. SystemExit when
    the request does not succeed."""
    method, path, body, headers = request
    source = str(REPO / "functions" / name / "main.py")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            json.dumps(list(PACKAGES.values())),
            json.dumps([name, source, method, path, body, headers]),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**{k: v for k, v in env.items() if k != "FUNCTION_TARGET"}, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    if result.returncode:
        raise SystemExit(f"{name}: the probe failed: {result.stderr[-2000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if answer["status"] >= 300:
        raise SystemExit(f"{name}: first request answered {answer['status']}: {answer['body']}")
    by_module = {module: label for label, module in PACKAGES.items()}
    own = {by_module[m] for m, on_main in answer["seen"].items() if on_main}
    return own, {by_module[m] for m, on_main in answer["seen"].items() if not on_main} - own
