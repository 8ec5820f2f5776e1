"""The deployed functions, read from their folders: every `functions/<name>/main.py` is one.

The folders are the only list. The local stack (emulators/stack.py), the local scheduler
and the deployment (infra/terraform/function_list.tf reads the same files) derive theirs
from them, and tests/unit/test_function_list.py checks that Terraform's reading agrees
with this one.

What a folder says about its function:
- main.py's decorator: `@functions_framework.http` serves HTTP, `@functions_framework.cloud_event`
  is triggered by Pub/Sub. The decorated function must be named as its folder, because
  that name is the entry point (and functions-framework registers every main.py under one
  module name, so entry points must differ).
- deploy.json: `tick_topic_setting` and
  `tick_schedule_setting` name the fields of common/config.py's Settings holding the
  topic whose Cloud Scheduler ticks trigger the function and their cron schedule
  (required for a triggered function, refused for an HTTP one); `database_login`
  (required) names the kind of database login the function uses, one of
  DATABASE_LOGINS, each a database role with only what that kind of function uses
  (db/schema/99_grants.sql), and its own service account and IAM database user in
  Google Cloud (infra/terraform/database.tf). JSON because Terraform can read it
  (`jsondecode`) as well as Python. It is deployment metadata, not code:
  infra/bundle.py leaves it out of the bundle.

main.py is read with `ast`, not imported: importing a function pulls in its clients.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO / "functions"
DECLARATION = "deploy.json"
# database_login -> the database role its login is granted (db/schema/99_grants.sql)
DATABASE_LOGINS = {
    "poster": "ledger_poster",  # the money functions
    "wallet_admin": "ledger_wallet_admin",  # the wallets function
    "access_admin": "ledger_access",  # the operators' access function
    "relay": "ledger_relay",  # the outbox sweeper
    "jobs": "ledger_jobs",  # lot expiry
    "exporter": "erp_exporter",  # the ERP export and its reconciliation
}
# Not a function's: the operator's CLI (make ops, python -m common.ops, common.reconcile)
OPERATOR_LOGIN, OPERATOR_ROLE = "operator", "ledger_operator"
# which logins a function of each trigger may use
LOGINS_BY_TRIGGER = {"http": ("poster", "wallet_admin", "access_admin"), "tick": ("relay", "jobs", "exporter")}
_TRIGGERS = {"http": "http", "cloud_event": "tick"}


class FunctionFolderError(ValueError):
    """A function folder that does not say what the deployment needs to know."""


@dataclasses.dataclass(frozen=True)
class Function:
    name: str  # the folder's name, which is also the entry point
    trigger: str  # "http" or "tick" (a Pub/Sub push of Cloud Scheduler's tick)
    tick_topic_setting: str | None = None  # a Settings field: the topic that triggers it
    tick_schedule_setting: str | None = None  # a Settings field: when Cloud Scheduler ticks
    database_login: str = ""

    @property
    def source(self) -> Path:
        return FUNCTIONS_DIR / self.name / "main.py"


def discover(root: Path = FUNCTIONS_DIR) -> dict[str, Function]:
    """Every function under `root`, by name, in name order."""
    return {folder.name: read(folder) for folder in sorted(root.iterdir()) if (folder / "main.py").is_file()}


def read(folder: Path) -> Function:
    trigger = _trigger(folder.name, folder / "main.py")
    declared = _declaration(folder / DECLARATION)
    function = Function(name=folder.name, trigger=trigger, **declared)
    is_tick = function.tick_topic_setting is not None and function.tick_schedule_setting is not None
    if trigger == "tick" and not is_tick:
        raise FunctionFolderError(
            f"{folder}: a cloud_event function needs tick_topic_setting and tick_schedule_setting in {DECLARATION}"
        )
    if trigger == "http" and (function.tick_topic_setting or function.tick_schedule_setting):
        raise FunctionFolderError(f"{folder}: an HTTP function has no tick topic")
    if function.database_login not in DATABASE_LOGINS:
        raise FunctionFolderError(
            f"{folder}: {DECLARATION} must name a database_login, one of {', '.join(DATABASE_LOGINS)}"
        )
    if function.database_login not in LOGINS_BY_TRIGGER[trigger]:
        # an HTTP function never sweeps or runs jobs, a scheduled one never serves callers
        kind = "an HTTP" if trigger == "http" else "a triggered"
        raise FunctionFolderError(
            f"{folder}: {kind} function logs in as one of {', '.join(LOGINS_BY_TRIGGER[trigger])}"
        )
    return function


def _trigger(name: str, main: Path) -> str:
    """The trigger of the one function main.py decorates, which must be named `name`."""
    found = []
    for node in ast.parse(main.read_text(), str(main)).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Attribute)
                    and isinstance(decorator.value, ast.Name)
                    and decorator.value.id == "functions_framework"
                    and decorator.attr in _TRIGGERS
                ):
                    found.append((node.name, _TRIGGERS[decorator.attr]))
    if len(found) != 1:
        raise FunctionFolderError(f"{main}: expected one @functions_framework.http or .cloud_event function")
    entry_point, trigger = found[0]
    if entry_point != name:
        raise FunctionFolderError(f"{main}: the entry point is {entry_point!r}, the folder {name!r}: name them alike")
    return trigger


def _declaration(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    declared = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(Function)} - {"name", "trigger"}
    if not isinstance(declared, dict) or set(declared) - known:
        raise FunctionFolderError(f"{path}: expected an object with some of {', '.join(sorted(known))}")
    return declared


def http_functions(functions: dict[str, Function]) -> list[str]:
    return [name for name, function in functions.items() if function.trigger == "http"]


def tick_functions(functions: dict[str, Function]) -> dict[str, Function]:
    return {name: function for name, function in functions.items() if function.trigger == "tick"}
