"""The folders under functions/ are the one list of functions: infra/functions.py reads
them, and Terraform's own reading of them (infra/terraform/function_list.tf) must agree."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from common.config import Settings
from infra.functions import (
    DATABASE_LOGINS,
    FunctionFolderError,
    discover,
    event_functions,
    http_functions,
    tick_functions,
)

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
FUNCTIONS = discover()


def terraform_reading(tmp_path: Path) -> dict:
    """function_list.tf's locals as Terraform evaluates them. The file needs no provider,
    so it is evaluated alone, beside a link to the real functions/ folder."""
    module = tmp_path / "infra" / "terraform"
    module.mkdir(parents=True)
    shutil.copy(TERRAFORM / "function_list.tf", module)
    (tmp_path / "functions").symlink_to(REPO / "functions")
    expression = (
        "jsonencode({http = local.http_functions, ticks = local.tick_function_topics,"
        " logins = local.database_login_functions,"
        " roles = { for login, declared in local.database_logins : login => declared.db_role }})"
    )
    result = subprocess.run(
        ["terraform", "console"], cwd=module, input=expression, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def pubsub_tick_topics() -> set[str]:
    block = re.search(r"ticks = \{(.*?)\n  \}", (TERRAFORM / "pubsub.tf").read_text(), re.S).group(1)
    return set(re.findall(r'^\s+"([\w-]+)"\s+=', block, re.M))


def test_every_folder_with_a_main_py_is_a_function():
    folders = sorted(p.name for p in (REPO / "functions").iterdir() if (p / "main.py").exists())
    assert list(FUNCTIONS) == folders
    assert sorted(http_functions(FUNCTIONS) + list(event_functions(FUNCTIONS))) == folders


def test_a_triggered_function_names_settings_that_exist():
    settings = Settings()
    assert tick_functions(FUNCTIONS), "no Pub/Sub-triggered function found"
    for function in tick_functions(FUNCTIONS).values():
        assert isinstance(getattr(settings, function.tick_topic_setting), str), function.name
        assert isinstance(getattr(settings, function.tick_schedule_setting), str), function.name


def test_terraform_reads_the_folders_as_python_does(tmp_path):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    terraform = terraform_reading(tmp_path)
    settings = Settings()
    assert sorted(terraform["http"]) == http_functions(FUNCTIONS)
    # Terraform spells each tick topic from its Settings field; the local stack and the
    # functions take the field's default: the two must be the same name.
    assert terraform["ticks"] == {
        name: getattr(settings, function.tick_topic_setting) for name, function in tick_functions(FUNCTIONS).items()
    }
    # one identity (and database user) per login, granted the role infra/functions.py
    # names, each serving the functions that name it
    assert terraform["roles"] == DATABASE_LOGINS
    assert {login: sorted(names) for login, names in terraform["logins"].items()} == {
        login: [n for n, f in FUNCTIONS.items() if f.database_login == login] for login in DATABASE_LOGINS
    }
    # Cloud Scheduler ticks exactly the topics some function consumes.
    assert pubsub_tick_topics() == set(terraform["ticks"].values())


# Each function's database login: the kind of function it is, and so what it may do in
# the database (db/schema/99_grants.sql). A new function must choose.
EXPECTED_LOGINS = {
    **dict.fromkeys(
        ["actions", "addon", "allocate", "bonus", "reclaim", "topup", "transfer", "usage", "void"], "poster"
    ),
    "wallets": "wallet_admin",
    "access": "access_admin",
    "outbox_sweeper": "relay",
    "lot_expiry": "jobs",
    "erp_export": "exporter",
    "erp_reconcile": "exporter",
}


def test_every_function_logs_in_as_its_kind():
    assert {name: function.database_login for name, function in FUNCTIONS.items()} == EXPECTED_LOGINS


def test_terraform_deploys_what_function_list_tf_reads():
    source = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))
    flat = re.sub(r"\s+", " ", source)
    assert "for_each = local.function_names" in flat  # a bundle for every function
    assert "for_each = local.http_functions" in flat and "for_each = local.tick_function_topics" in flat
    assert "pubsub_topic = google_pubsub_topic.ticks[each.value].id" in flat
    assert flat.count("entry_point = each.key") == 2
    for name in FUNCTIONS:  # no list of functions written out by hand
        assert f'"{name}"' not in source, name


def write_function(root: Path, name: str, main: str, declaration: dict | None = None) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "main.py").write_text(main)
    if declaration is not None:
        (root / name / "deploy.json").write_text(json.dumps(declaration))


HTTP_MAIN = "import functions_framework\n\n\n@functions_framework.http\n@decorated\ndef {name}(request):\n    pass\n"
TICK_MAIN = "import functions_framework\n\n\n@functions_framework.cloud_event\ndef {name}(cloud_event):\n    pass\n"
TICK = {"tick_topic_setting": "lot_expiry_tick_topic", "tick_schedule_setting": "lot_expiry_schedule"}
JOBS = {**TICK, "database_login": "jobs"}


def test_discovery_reads_the_decorator_and_the_declaration(tmp_path):
    write_function(tmp_path, "b_http", HTTP_MAIN.format(name="b_http"), {"database_login": "poster"})
    write_function(tmp_path, "a_tick", TICK_MAIN.format(name="a_tick"), {**TICK, "database_login": "exporter"})
    (tmp_path / "not_a_function").mkdir()
    found = discover(tmp_path)
    assert list(found) == ["a_tick", "b_http"]
    assert found["a_tick"].trigger == "event" and found["a_tick"].database_login == "exporter"
    assert found["b_http"].trigger == "http" and found["b_http"].tick_topic_setting is None


@pytest.mark.parametrize(
    ("main", "declaration", "complaint"),
    [
        (HTTP_MAIN.format(name="other"), None, "the entry point is 'other'"),
        ("def f(request):\n    pass\n", None, "expected one @functions_framework"),
        (TICK_MAIN.format(name="fn"), {"database_login": "jobs"}, "needs tick_topic_setting"),
        (HTTP_MAIN.format(name="fn"), JOBS, "has no tick topic"),
        (HTTP_MAIN.format(name="fn"), None, "deploy.json must name a database_login"),
        (TICK_MAIN.format(name="fn"), TICK, "deploy.json must name a database_login"),
        (HTTP_MAIN.format(name="fn"), {"database_login": "exporter"}, "an HTTP function logs in as one of"),
        (HTTP_MAIN.format(name="fn"), {"database_login": "relay"}, "an HTTP function logs in as one of"),
        (TICK_MAIN.format(name="fn"), {**TICK, "database_login": "wallet_admin"}, "a triggered function logs in as"),
        (
            TICK_MAIN.format(name="fn"),
            {"push_topic_settings": ["action_topics"], "database_login": "poster"},
            "pushed topics need a dead_letter_topic_setting",
        ),
        (
            TICK_MAIN.format(name="fn"),
            {"tick_topic_setting": "lot_expiry_tick_topic", "database_login": "jobs"},
            "name both tick_topic_setting and tick_schedule_setting",
        ),
        (
            HTTP_MAIN.format(name="fn"),
            {"push_topic_settings": ["action_topics"], "dead_letter_topic_setting": "x", "database_login": "poster"},
            "has no tick topic",
        ),
        (
            TICK_MAIN.format(name="fn"),
            {**TICK, "database_login": "access_admin"},
            "a triggered function logs in as one of",
        ),
        (TICK_MAIN.format(name="fn"), {**TICK, "database_login": "root"}, "must name a database_login, one of"),
        (TICK_MAIN.format(name="fn"), {**TICK, "memory": "1Gi"}, "expected an object with some of"),
    ],
)
def test_discovery_refuses_a_folder_that_does_not_say_enough(tmp_path, main, declaration, complaint):
    write_function(tmp_path, "fn", main, declaration)
    with pytest.raises(FunctionFolderError, match=re.escape(complaint)):
        discover(tmp_path)
