"""The log-based metrics of infra/terraform/monitoring.tf read fields the code really
logs: each test runs a scheduled function's own code path against the test stack (real
Postgres, Pub/Sub emulator, ERP receiver), formats its log line as Cloud Logging receives
it, and finds there the `event` the metric filters on and the number it extracts."""

import dataclasses
import importlib.util
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

from common import bootstrap
from common.adapters.erp_http import ErpClient
from common.adapters.erp_store import ErpStore
from common.config import get_settings
from common.erp_export import ErpExport
from common.logs import CloudLoggingFormatter
from emulators.stack import ERP_TOKEN
from tests.support import exporter_pool
from tests.unit.test_monitoring import LOCALS

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
METRICS = {**LOCALS["log_distribution_metrics"], **LOCALS["log_counter_metrics"]}


def load(function):
    path = FUNCTIONS / function / "main.py"
    spec = importlib.util.spec_from_file_location(f"{function}_main_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def erp_stream(stack, monkeypatch):
    """The ERP functions on an export stream and ERP books of this test's own, as the
    export's login (in-process, the stack's default login is a poster's)."""
    name = f"m{uuid.uuid4().hex[:10]}"
    store = ErpStore(exporter_pool(stack))
    store.open_stream(name)
    client = ErpClient(f"http://127.0.0.1:{stack.ports['erp']}/books/{name}", ERP_TOKEN, 10)
    monkeypatch.setattr(bootstrap, "erp_store", lambda: store)
    monkeypatch.setattr(bootstrap, "erp_client", lambda: client)
    monkeypatch.setattr(
        bootstrap, "erp_export", lambda: ErpExport(store, lambda: client, bootstrap.chart(), stream=name)
    )
    return name


def tick(topic, age=timedelta(0)):
    """A Cloud Scheduler tick as Pub/Sub delivers it, published `age` ago."""
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/projects/demo/topics/{topic}",
        "id": uuid.uuid4().hex,
        "time": (datetime.now(UTC) - age).isoformat().replace("+00:00", "Z"),
    }
    return CloudEvent(attributes, {"message": {"data": "dGljaw==", "messageId": attributes["id"]}})


def logged(caplog, event):
    """The JSON payloads (as Cloud Logging stores them) of the lines with this event."""
    formatter = CloudLoggingFormatter()
    payloads = [json.loads(formatter.format(record)) for record in caplog.records]
    return [payload for payload in payloads if payload.get("event") == event]


def metrics_of(event):
    return {name: metric for name, metric in METRICS.items() if metric["event"] == event}


def assert_metrics_read(payload, event):
    """Every metric on this event finds its figure: present and a number."""
    metrics = metrics_of(event)
    assert metrics, f"no log-based metric counts {event}"
    for name, metric in metrics.items():
        if "field" in metric:
            value = payload.get(metric["field"])
            assert isinstance(value, int | float) and not isinstance(value, bool), (name, payload)


def test_an_outbox_sweep_logs_the_oldest_unpublished_age(stack, caplog):
    with caplog.at_level(logging.INFO):
        load("outbox_sweeper").outbox_sweeper(tick("outbox-sweep-tick"))
    [payload] = logged(caplog, "outbox_sweep")
    assert_metrics_read(payload, "outbox_sweep")


def test_an_erp_export_pass_logs_how_many_batches_are_parked(erp_stream, caplog):
    with caplog.at_level(logging.INFO):
        load("erp_export").erp_export(tick("erp-export-tick"))
    [payload] = logged(caplog, "erp_export_pass")
    assert_metrics_read(payload, "erp_export_pass")


def test_a_reconciliation_logs_how_many_differences_it_found(erp_stream, caplog, monkeypatch):
    reconciler = load("erp_reconcile")
    monkeypatch.setattr(reconciler, "get_settings", lambda: dataclasses.replace(get_settings(), erp_stream=erp_stream))
    with caplog.at_level(logging.INFO):
        reconciler.erp_reconcile(tick("erp-reconcile-tick"))
    [payload] = logged(caplog, "erp_reconciliation")
    assert_metrics_read(payload, "erp_reconciliation")
    assert payload["difference_count"] == len(payload["differences"])


def test_the_daily_reconciliation_logs_how_many_invariants_it_found_broken(stack, caplog, monkeypatch):
    function = load("ledger_reconcile")
    user, password = stack.login("reconciler")
    settings = dataclasses.replace(get_settings(), db_user=user, db_password=password)
    monkeypatch.setattr(function, "get_settings", lambda: settings)
    with caplog.at_level(logging.INFO):
        function.ledger_reconcile(tick("ledger-reconcile-tick"))
    [payload] = logged(caplog, "ledger_reconciliation")
    assert_metrics_read(payload, "ledger_reconciliation")
    assert payload["violation_count"] == len(payload["violations"]) == 0 and payload["severity"] == "INFO"


def test_a_tick_too_old_to_run_is_logged_for_its_counter(stack, caplog):
    with caplog.at_level(logging.INFO):
        load("outbox_sweeper").outbox_sweeper(tick("outbox-sweep-tick", age=timedelta(days=2)))
    [payload] = logged(caplog, "event_dropped_too_old")
    assert_metrics_read(payload, "event_dropped_too_old")
    assert not logged(caplog, "outbox_sweep")  # it did not run
