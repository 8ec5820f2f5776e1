"""The deployed functions, read from their folders: every `functions/<name>/main.py` is one.

The folders are the only list. The local stack (emulators/stack.py), the local scheduler
and the deployment (infra/terraform/function_list.tf reads the same files) derive theirs
from them, and tests/unit/test_function_list.py checks that Terraform's reading agrees
with this one.

What a folder says about its function:
- main.py's decorator: `@functions_framework.http` serves HTTP, `@functions_framework.cloud_event`
  is triggered by Pub/Sub: by Cloud Scheduler's ticks, by messages pushed from topics, or
  both. The decorated function must be named as its folder, because that name is the
  entry point (and functions-framework registers every main.py under one module name,
  so entry points must differ).
- deploy.json: `tick_topic_setting` and
  `tick_schedule_setting` name the fields of common/config.py's Settings holding the
  topic whose Cloud Scheduler ticks trigger the function and their cron schedule;
  `push_topic_settings` lists the Settings fields naming the topics (one, or a
  comma-separated list) whose messages are pushed to the function, each through a push
  subscription with a retry policy and `dead_letter_topic_setting`'s dead-letter topic.
  A triggered function needs ticks or pushed topics (or both); an HTTP one has neither.
  `database_login`
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
    "automation": "ledger_automation",  # event-driven automatic actions (functions/automation)
    "messages": "ledger_messages",  # balance actions as messages (functions/actions)
    "reconciler": "ledger_reconciler",  # the daily reconciliation of the ledger's invariants
}
# Not a function's: the operator's CLI (make ops, python -m common.ops, common.reconcile)
OPERATOR_LOGIN, OPERATOR_ROLE = "operator", "ledger_operator"
# which logins a function of each trigger may use (the actions function posts as the
# HTTP money functions do, but logs in as its own `messages`: it alone may publish
# results and dead letters)
LOGINS_BY_TRIGGER = {
    "http": ("poster", "wallet_admin", "access_admin"),
    "event": ("relay", "jobs", "exporter", "automation", "messages", "reconciler"),
}
_TRIGGERS = {"http": "http", "cloud_event": "event"}


# A local stack's ports (emulators/stack.py): services from its base, functions from
# FIRST_PORT_OFFSET, all within PORT_BLOCK.
FIRST_PORT_OFFSET, PORT_BLOCK = 10, 50


class FunctionFolderError(ValueError):
    """A function folder that does not say what the deployment needs to know."""


@dataclasses.dataclass(frozen=True)
class Function:
    name: str  # the folder's name, which is also the entry point
    trigger: str  # "http" or "event" (Pub/Sub pushes: Cloud Scheduler's ticks, messages)
    tick_topic_setting: str | None = None  # a Settings field: the topic that triggers it
    tick_schedule_setting: str | None = None  # a Settings field: when Cloud Scheduler ticks
    push_topic_settings: tuple[str, ...] = ()  # Settings fields: topics whose messages it takes
    dead_letter_topic_setting: str | None = None  # a Settings field: where undeliverable pushes go
    database_login: str = ""
    # The function's local port, as an offset from its stack's base (emulators/stack.py):
    # fixed per function, so a new function never moves the others' ports (the docs'
    # examples name them).
    local_port_offset: int = 0

    @property
    def source(self) -> Path:
        return FUNCTIONS_DIR / self.name / "main.py"


def discover(root: Path = FUNCTIONS_DIR) -> dict[str, Function]:
    """Every function under `root`, by name, in name order."""
    found = {folder.name: read(folder) for folder in sorted(root.iterdir()) if (folder / "main.py").is_file()}
    offsets: dict[int, str] = {}
    for name, function in found.items():
        if function.local_port_offset in offsets:
            raise FunctionFolderError(
                f"{name} and {offsets[function.local_port_offset]} have the same local_port_offset"
                f" {function.local_port_offset}"
            )
        offsets[function.local_port_offset] = name
    return found


def read(folder: Path) -> Function:
    trigger = _trigger(folder.name, folder / "main.py")
    declared = _declaration(folder / DECLARATION)
    if "push_topic_settings" in declared:
        declared["push_topic_settings"] = tuple(declared["push_topic_settings"])
    function = Function(name=folder.name, trigger=trigger, **declared)
    ticks = (function.tick_topic_setting, function.tick_schedule_setting)
    if (ticks[0] is None) != (ticks[1] is None):
        raise FunctionFolderError(f"{folder}: name both tick_topic_setting and tick_schedule_setting, or neither")
    if function.push_topic_settings and function.dead_letter_topic_setting is None:
        raise FunctionFolderError(f"{folder}: pushed topics need a dead_letter_topic_setting in {DECLARATION}")
    if trigger == "event" and ticks[0] is None and not function.push_topic_settings:
        raise FunctionFolderError(
            f"{folder}: a cloud_event function needs tick_topic_setting and tick_schedule_setting,"
            f" or push_topic_settings, in {DECLARATION}"
        )
    if trigger == "http" and (ticks != (None, None) or function.push_topic_settings):
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
    if not (
        isinstance(function.local_port_offset, int) and FIRST_PORT_OFFSET <= function.local_port_offset < PORT_BLOCK
    ):
        raise FunctionFolderError(
            f"{folder}: {DECLARATION} must name a local_port_offset from {FIRST_PORT_OFFSET} to {PORT_BLOCK - 1}"
            " that no other function has"
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


def event_functions(functions: dict[str, Function]) -> dict[str, Function]:
    """Every Pub/Sub-triggered function."""
    return {name: function for name, function in functions.items() if function.trigger == "event"}


def tick_functions(functions: dict[str, Function]) -> dict[str, Function]:
    """The functions Cloud Scheduler's ticks trigger."""
    return {name: f for name, f in functions.items() if f.trigger == "event" and f.tick_topic_setting is not None}


def push_functions(functions: dict[str, Function]) -> dict[str, Function]:
    """The functions pushed messages from topics (besides any ticks)."""
    return {name: f for name, f in functions.items() if f.trigger == "event" and f.push_topic_settings}


def dead_letter_topic(function: Function, settings: object) -> str:
    """Where Pub/Sub moves what a triggered function keeps failing on: its
    dead_letter_topic_setting's topic, else one named from the function (a tick
    function's: outbox_sweeper -> outbox-sweeper-dead-letter), as
    infra/terraform/function_list.tf names it."""
    if function.dead_letter_topic_setting is not None:
        return str(getattr(settings, function.dead_letter_topic_setting))
    return f"{function.name.replace('_', '-')}-dead-letter"


def topics_of(setting_value: str) -> list[str]:
    """A push topic setting's topics: one name or a comma-separated list."""
    return [topic.strip() for topic in setting_value.split(",") if topic.strip()]
