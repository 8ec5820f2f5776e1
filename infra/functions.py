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
- deploy.json, only where a default does not fit: `tick_topic_setting` and
  `tick_schedule_setting` name the fields of common/config.py's Settings holding the
  topic whose Cloud Scheduler ticks trigger the function and their cron schedule
  (required for a triggered function, refused for an HTTP one); `database_login` is
  "functions" (the default), for a triggered function "exporter" (the ERP export's own
  database login and service account), or for an HTTP one "access_admin" (the operators'
  access function's: principals and grants change through its role alone). JSON because Terraform can read it
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
DATABASE_LOGINS = ("functions", "exporter", "access_admin")
# which logins a function of each trigger may use (function_list.tf gives the identities)
LOGINS_BY_TRIGGER = {"http": ("functions", "access_admin"), "tick": ("functions", "exporter")}
_TRIGGERS = {"http": "http", "cloud_event": "tick"}


class FunctionFolderError(ValueError):
    """A function folder that does not say what the deployment needs to know."""


@dataclasses.dataclass(frozen=True)
class Function:
    name: str  # the folder's name, which is also the entry point
    trigger: str  # "http" or "tick" (a Pub/Sub push of Cloud Scheduler's tick)
    tick_topic_setting: str | None = None  # a Settings field: the topic that triggers it
    tick_schedule_setting: str | None = None  # a Settings field: when Cloud Scheduler ticks
    database_login: str = "functions"

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
        raise FunctionFolderError(f"{folder}: database_login must be one of {', '.join(DATABASE_LOGINS)}")
    if function.database_login not in LOGINS_BY_TRIGGER[trigger]:
        # function_list.tf gives the exporter's identity to triggered functions only, and
        # the access function's to HTTP functions only
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
