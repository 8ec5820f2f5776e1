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
    Function,
    FunctionFolderError,
    dead_letter_topic,
    discover,
    event_functions,
    http_functions,
    tick_functions,
    topics_of,
)

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
FUNCTIONS = discover()


def terraform_reading(tmp_path: Path, functions: Path = REPO / "functions") -> dict:
    """function_list.tf's locals as Terraform evaluates them, with variables.tf's defaults.
    Neither file needs a provider, so they are evaluated alone, beside a link to the
    functions/ folder (the real one unless told)."""
    module = tmp_path / "infra" / "terraform"
    module.mkdir(parents=True)
    for name in ("function_list.tf", "variables.tf"):
        shutil.copy(TERRAFORM / name, module)
    (tmp_path / "functions").symlink_to(functions)
    expression = (
        "jsonencode({http = local.http_functions, ticks = local.tick_function_topics,"
        " logins = local.database_login_functions,"
        " roles = { for login, declared in local.database_logins : login => declared.db_role },"
        " pushed = local.push_functions, subscriptions = local.push_subscriptions,"
        " dead_letters = local.dead_letter_topics,"
        " setting_topics = local.setting_topics, unknown_settings = local.unknown_topic_settings})"
    )
    result = subprocess.run(
        ["terraform", "console", "-var=project_id=demo-project"],
        cwd=module,
        input=expression,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def scheduled_tick_topics() -> set[str]:
    block = re.search(r"tick_schedules = \{(.*?)\n  \}", (TERRAFORM / "pubsub.tf").read_text(), re.S).group(1)
    return set(re.findall(r'^\s+"([\w-]+)"\s+=', block, re.M))


def pushed_topics(function: Function, settings: Settings) -> list[str]:
    """The topics pushed to a function, as the local stack reads them (the Settings
    defaults), its tick topic last when it also has one."""
    topics = [topic for field in function.push_topic_settings for topic in topics_of(getattr(settings, field))]
    return topics + ([getattr(settings, function.tick_topic_setting)] if function.tick_topic_setting else [])


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
    # Cloud Scheduler has a schedule for every topic some function consumes (pubsub.tf
    # makes jobs for those alone).
    assert set(terraform["ticks"].values()) <= scheduled_tick_topics()
    # every triggered function, ticked or pushed, takes its topics through push
    # subscriptions with dead letters: its topics as the local stack makes them, its
    # dead-letter topic as infra/functions.py names it
    assert {name: {**pushed, "topics": sorted(pushed["topics"])} for name, pushed in terraform["pushed"].items()} == {
        name: {
            "topics": sorted(pushed_topics(function, settings)),
            "dead_letter_topic": dead_letter_topic(function, settings),
            "ticked_only": not function.push_topic_settings,
        }
        for name, function in event_functions(FUNCTIONS).items()
    }
    assert set(terraform["dead_letters"]) == {
        dead_letter_topic(f, settings) for f in event_functions(FUNCTIONS).values()
    }
    assert terraform["unknown_settings"] == []


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_names_the_topics_a_setting_names_by_default(tmp_path):
    """The function reads its topics from the environment Terraform sets, but the local
    stack, the operator's command and the docs use the Settings defaults: the same names."""
    settings = Settings()
    for field, topics in terraform_reading(tmp_path)["setting_topics"].items():
        assert sorted(topics) == sorted(topics_of(getattr(settings, field))), field


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_pushes_every_topic_of_a_pushed_function_and_gives_it_dead_letters(tmp_path):
    """On folders of its own, so it holds whichever functions exist: each pushed topic gets
    a push subscription to the function, dead-lettered to its function's topic; a function
    also ticked takes its ticks the same way, and so does a function ticked alone, with a
    dead-letter topic named from it: none goes through an Eventarc trigger."""
    functions = tmp_path / "functions_under_test"
    write_function(functions, "a_tick", TICK_MAIN.format(name="a_tick"), JOBS)
    pushed = {
        "tick_topic_setting": "automation_tick_topic",
        "tick_schedule_setting": "automation_schedule",
        "push_topic_settings": ["action_topics", "events_topic"],
        "dead_letter_topic_setting": "actions_dead_letter_topic",
        "database_login": "messages",
    }
    write_function(functions, "b_pushed", TICK_MAIN.format(name="b_pushed"), pushed)
    write_function(
        functions,
        "c_unknown",
        TICK_MAIN.format(name="c_unknown"),
        {
            "push_topic_settings": ["mystery_topic"],
            "dead_letter_topic_setting": "automation_dead_letter_topic",
            "database_login": "automation",
        },
    )
    assert set(discover(functions)) == {"a_tick", "b_pushed", "c_unknown"}
    terraform = terraform_reading(tmp_path, functions)
    topics = ["balance-actions", "metering-usage", "ledger-events", "automation-tick"]
    assert terraform["subscriptions"] == {
        **{
            f"{topic}-b_pushed": {
                "function": "b_pushed",
                "topic": topic,
                "dead_letter_topic": "balance-actions-dead-letter",
            }
            for topic in topics
        },
        "lot-expiry-tick-a_tick": {
            "function": "a_tick",
            "topic": "lot-expiry-tick",
            "dead_letter_topic": "a-tick-dead-letter",
        },
    }
    assert sorted(terraform["dead_letters"]) == [
        "a-tick-dead-letter",
        "automation-dead-letter",
        "balance-actions-dead-letter",
    ]
    assert terraform["pushed"]["a_tick"]["ticked_only"] and not terraform["pushed"]["b_pushed"]["ticked_only"]
    # a setting Terraform can't name the topics of: the plan stops (invokers.tf)
    assert terraform["unknown_settings"] == ["mystery_topic"]


# Each function's database login: the kind of function it is, and so what it may do in
# the database (db/schema/99_grants.sql). A new function must choose.
EXPECTED_LOGINS = {
    **dict.fromkeys(["addon", "allocate", "bonus", "reclaim", "topup", "transfer", "usage", "void"], "poster"),
    "actions": "messages",
    "wallets": "wallet_admin",
    "access": "access_admin",
    "outbox_sweeper": "relay",
    "lot_expiry": "jobs",
    "dormancy": "jobs",
    "ledger_reconcile": "reconciler",
    "erp_export": "exporter",
    "erp_reconcile": "exporter",
    "automation": "automation",
}


def test_every_function_logs_in_as_its_kind():
    assert {name: function.database_login for name, function in FUNCTIONS.items()} == EXPECTED_LOGINS


def test_terraform_deploys_what_function_list_tf_reads():
    source = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))
    flat = re.sub(r"\s+", " ", source)
    assert "for_each = local.function_names" in flat  # a bundle for every function
    assert "for_each = local.http_functions" in flat and "for_each = local.push_functions" in flat
    # no Eventarc trigger: every triggered function takes its topics through push subscriptions
    assert "event_trigger {" not in flat
    assert flat.count("entry_point = each.key") == 2
    # the tick topics and their jobs: those some function consumes
    assert "ticks = { for topic in values(local.tick_function_topics) : topic => local.tick_schedules[topic] }" in flat
    for name in FUNCTIONS:  # no list of functions written out by hand (a login may share a name)
        assert not re.search(rf'(?<!database_login == )(?<!database_login\[)"{name}"', source), name


def write_function(root: Path, name: str, main: str, declaration: dict | None = None) -> None:
    """A function folder; its deploy.json gets a local port of its own unless it names one."""
    (root / name).mkdir(parents=True)
    (root / name / "main.py").write_text(main)
    if declaration is not None:
        port = {"local_port_offset": 10 + sum(1 for _ in root.iterdir())}
        (root / name / "deploy.json").write_text(json.dumps({**port, **declaration}))


HTTP_MAIN = "import functions_framework\n\n\n@functions_framework.http\n@decorated\ndef {name}(request):\n    pass\n"
TICK_MAIN = "import functions_framework\n\n\n@functions_framework.cloud_event\ndef {name}(cloud_event):\n    pass\n"
TICK = {"tick_topic_setting": "lot_expiry_tick_topic", "tick_schedule_setting": "lot_expiry_schedule"}
JOBS = {**TICK, "database_login": "jobs"}


def test_each_function_keeps_a_local_port_of_its_own(tmp_path):
    write_function(tmp_path, "a", HTTP_MAIN.format(name="a"), {"database_login": "poster", "local_port_offset": 12})
    write_function(tmp_path, "b", HTTP_MAIN.format(name="b"), {"database_login": "poster", "local_port_offset": 12})
    with pytest.raises(FunctionFolderError, match="b and a have the same local_port_offset 12"):
        discover(tmp_path)
    for offset in (None, 9, 50, "12"):
        folder = tmp_path / f"c{offset}"
        write_function(folder, "c", HTTP_MAIN.format(name="c"), {"database_login": "poster"})
        declared = json.loads((folder / "c" / "deploy.json").read_text())
        if offset is None:
            del declared["local_port_offset"]
        else:
            declared["local_port_offset"] = offset
        (folder / "c" / "deploy.json").write_text(json.dumps(declared))
        with pytest.raises(FunctionFolderError, match="must name a local_port_offset"):
            discover(folder)


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
