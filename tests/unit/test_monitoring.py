"""infra/terraform/monitoring.tf, parsed with python-hcl2: every figure issue 17 names
has an alert policy, each policy says what to do and reaches every notification channel,
and the dead-letter alert covers every dead-letter subscription. That the log-based
metrics read fields the code really logs: tests/integration/test_monitoring_signals.py."""

import re
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from common.config import Settings

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"


def parse(name: str) -> dict:
    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    return hcl2.loads((TERRAFORM / name).read_text(), serialization_options=options)


MONITORING = parse("monitoring.tf")
LOCALS = {key: value for block in MONITORING["locals"] for key, value in block.items()}
RESOURCES: dict[str, dict[str, dict]] = {}
for declared in MONITORING["resource"]:
    for kind, named in declared.items():
        RESOURCES.setdefault(kind, {}).update(named)
POLICIES = RESOURCES["google_monitoring_alert_policy"]
VARIABLES = {name for block in parse("variables.tf")["variable"] for name in block}


def blocks(found) -> list[dict]:
    """A nested block as a list, whether it appears once or repeated."""
    return found if isinstance(found, list) else [found]


def one(found) -> dict:
    [block] = blocks(found)
    return block


def conditions(policy: dict) -> list[dict]:
    return blocks(policy["conditions"])


def watched(policy: dict) -> str:
    """Everything a policy's conditions look at: filters, thresholds, aggregations."""
    return " ".join(str(condition) for condition in conditions(policy))


# Each figure of the issue (and the dropped events of helper R's part), and how to tell
# a policy that watches it.
SIGNALS = {
    "outbox backlog's oldest age": lambda text: "outbox_oldest_pending_age" in text,
    "parked ERP batches": lambda text: '"erp_parked_batches"' in text and "COMPARISON_GT" in text,
    "reconciliation differences": lambda text: "erp_reconcile_differences" in text,
    "the ledger's invariants broken (the daily reconciliation)": lambda text: "ledger_invariant_violations" in text,
    "5xx rate per function": lambda text: (
        "run.googleapis.com/request_count" in text
        and "5xx" in text
        and "denominator_filter" in text
        and "resource.label.service_name" in text
    ),
    "p95 latency per function": lambda text: (
        "run.googleapis.com/request_latencies" in text
        and "REDUCE_PERCENTILE_95" in text
        and "resource.label.service_name" in text
    ),
    "dead letters": lambda text: "num_undelivered_messages" in text and "dead_letter_filter" in text,
    "events dropped for being too old": lambda text: "events_dropped_too_old" in text,
    "Cloud SQL CPU": lambda text: "cloudsql.googleapis.com/database/cpu/utilization" in text,
    "Cloud SQL connections": lambda text: "postgresql/num_backends" in text and "local.max_connections" in text,
}


@pytest.mark.parametrize("signal", SIGNALS)
def test_every_signal_of_the_issue_has_an_alert_policy(signal):
    # the dead-letter filter lives in a local: resolve it, as Terraform would
    resolved = "dead_letter_filter " + LOCALS["dead_letter_filter"]
    texts = [watched(p).replace("local.dead_letter_filter", resolved) for p in POLICIES.values()]
    assert any(SIGNALS[signal](text) for text in texts), f"no alert policy watches {signal}"


@pytest.mark.parametrize("name", POLICIES)
def test_each_policy_says_what_it_means_and_which_command_to_run(name):
    documentation = one(POLICIES[name]["documentation"])
    assert documentation["subject"] and documentation["mime_type"] == "text/markdown"
    assert "python -m common." in documentation["content"] or "gcloud " in documentation["content"]
    assert "docs/monitoring.md" in LOCALS["runbook"] and "${local.runbook}" in documentation["content"]


@pytest.mark.parametrize("name", POLICIES)
def test_each_threshold_and_duration_is_a_variable(name):
    for condition in conditions(POLICIES[name]):
        for kind, body in condition.items():
            if kind == "condition_threshold":
                body = one(body)
                assert re.search(r"\b(var|local)\.\w+", str(body["threshold_value"])), name
                used = re.findall(r"\bvar\.(\w+)", str(body["threshold_value"]) + str(body["duration"]))
                assert set(used) <= VARIABLES


def test_notification_channels_reach_every_policy():
    everything = LOCALS["alert_notification_channels"]
    assert "var.alert_notification_channel_ids" in everything
    assert "google_monitoring_notification_channel.email" in everything
    assert {"alert_notification_channel_ids", "alert_emails"} <= VARIABLES
    assert RESOURCES["google_monitoring_notification_channel"]["email"]["for_each"] == "${toset(var.alert_emails)}"
    for name, policy in POLICIES.items():
        assert policy.get("notification_channels") == "${local.alert_notification_channels}", name


def test_the_dead_letter_alert_covers_every_dead_letter_subscription():
    """pubsub.tf names each dead-letter subscription like its topic: the Settings defaults
    (function_list.tf's setting_topics) and the ledger events' own."""
    settings = Settings()
    names = [settings.actions_dead_letter_topic, settings.automation_dead_letter_topic, "ledger-events-dead-letter"]
    # RE2's full match, as Python's on a pattern without RE2-only syntax
    assert all(re.fullmatch(LOCALS["dead_letter_subscriptions"], name) for name in names)
    assert not re.fullmatch(LOCALS["dead_letter_subscriptions"], "balance-actions-actions")
    assert "${local.dead_letter_subscriptions}" in LOCALS["dead_letter_filter"]


def test_each_log_metric_reads_the_event_and_field_its_local_names():
    """The integration test proves the code logs these names; here the metrics use them."""
    for kind, declared in (("distribution", "log_distribution_metrics"), ("counter", "log_counter_metrics")):
        metric = RESOURCES["google_logging_metric"][kind]
        assert metric["for_each"] == f"${{local.{declared}}}"
        assert 'jsonPayload.event = "${each.value.event}"' in metric["filter"]
    extractor = RESOURCES["google_logging_metric"]["distribution"]["value_extractor"]
    assert extractor == "EXTRACT(jsonPayload.${each.value.field})"
    assert LOCALS["log_counter_metrics"]["events_dropped_too_old"]["event"] == "event_dropped_too_old"


# A log-based distribution metric holds DISTRIBUTION values: Cloud Monitoring refuses
# ALIGN_MIN and ALIGN_MAX on them (numeric values only); ALIGN_MEAN takes the
# distribution's exact mean, ALIGN_DELTA and the percentiles work on it too.
DISTRIBUTION_ALIGNERS = {"ALIGN_MEAN", "ALIGN_DELTA", "ALIGN_SUM", "ALIGN_COUNT"} | {
    f"ALIGN_PERCENTILE_{n}" for n in (5, 50, 95, 99)
}


def test_a_distribution_metric_is_aligned_the_way_cloud_monitoring_accepts():
    seen = 0
    for name, policy in POLICIES.items():
        for condition in conditions(policy):
            if "condition_threshold" not in condition:
                continue
            threshold = one(condition["condition_threshold"])
            if 'distribution["' not in str(threshold["filter"]):
                continue
            seen += 1
            aligner = one(threshold["aggregations"])["per_series_aligner"]
            assert aligner in DISTRIBUTION_ALIGNERS, (name, aligner)
    assert seen >= len(LOCALS["log_distribution_metrics"])
    for chart in LOCALS["dashboard_charts"]:
        if 'distribution["' in chart["filter"]:
            assert chart["aligner"] in DISTRIBUTION_ALIGNERS, chart["title"]
