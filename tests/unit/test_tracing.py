"""The request's trace, parsed from caller-controlled headers into Cloud Logging's
fields, and carried by every log line written while serving the request."""

import io
import json
import logging
import threading

import flask
import pytest

from common import logs, tracing
from common.http import endpoint
from common.tracing import SAMPLED_FIELD, SPAN_FIELD, TRACE_FIELD, Trace

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (f"00-{TRACE}-{SPAN}-01", Trace(TRACE, SPAN, True)),
        (f"00-{TRACE}-{SPAN}-00", Trace(TRACE, SPAN, False)),
        (f" 00-{TRACE}-{SPAN}-03 ", Trace(TRACE, SPAN, True)),  # other flag bits set too
        (f"01-{TRACE}-{SPAN}-01", Trace(TRACE, SPAN, True)),  # a later version, same layout
    ],
)
def test_a_valid_traceparent_gives_the_trace_its_span_and_whether_sampled(value, parsed):
    assert tracing.from_traceparent(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid (W3C)
        f"00-{TRACE}-{'0' * 16}-01",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is never valid
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase is not the format
        f"00-{TRACE}-{SPAN}-01-extra",
        f"00-{TRACE}x-{SPAN}-01",
        f'00-{TRACE}-{SPAN}-01", "severity": "EMERGENCY',  # an injection attempt
        f"00-{TRACE}-{SPAN}-01\n00-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}",
    ],
)
def test_a_malformed_traceparent_is_ignored(value):
    assert tracing.from_traceparent(value) is None


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (f"{TRACE}/1;o=1", Trace(TRACE, "0000000000000001", True)),
        (f"{TRACE}/18446744073709551615;o=0", Trace(TRACE, "ffffffffffffffff", False)),
        (f"{TRACE.upper()}/255", Trace(TRACE, "00000000000000ff", None)),
        (TRACE, Trace(TRACE, None, None)),
    ],
)
def test_a_valid_cloud_trace_context_gives_the_trace_and_its_span_in_hex(value, parsed):
    assert tracing.from_cloud_trace_context(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        None,
        f"{'0' * 32}/1;o=1",
        f"{TRACE}/0;o=1",  # span 0 is no span
        f"{TRACE}/18446744073709551616",  # past 64 bits
        f"{TRACE}/12a;o=1",
        f"{TRACE[:-1]}/1",
        f"{TRACE}/1;o=1\nINJECTED",
        "not a trace",
    ],
)
def test_a_malformed_cloud_trace_context_is_ignored(value):
    assert tracing.from_cloud_trace_context(value) is None


def test_traceparent_wins_over_cloud_trace_context_and_a_bad_one_falls_back():
    other = "a" * 32
    both = {"traceparent": f"00-{TRACE}-{SPAN}-01", "X-Cloud-Trace-Context": f"{other}/1;o=1"}
    assert tracing.from_headers(both).trace_id == TRACE
    bad_first = {"traceparent": "garbage", "X-Cloud-Trace-Context": f"{other}/1;o=1"}
    assert tracing.from_headers(bad_first).trace_id == other
    assert tracing.from_headers({}) is None


def formatted_lines(run):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.CloudLoggingFormatter())
    logger = logging.getLogger("ledger.test_tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_logged_inside_the_binding_carries_the_trace_and_none_after():
    def run(logger):
        with tracing.bound(Trace(TRACE, SPAN, True), "my-project"):
            logger.info("one")
            logger.warning("two", extra={"wallet_id": 3})
        logger.info("after")

    one, two, after = formatted_lines(run)
    for line in (one, two):
        assert line[TRACE_FIELD] == f"projects/my-project/traces/{TRACE}"
        assert line[SPAN_FIELD] == SPAN and line[SAMPLED_FIELD] is True
    assert not {TRACE_FIELD, SPAN_FIELD, SAMPLED_FIELD} & set(after)


def test_a_trace_bound_in_one_thread_never_reaches_another_threads_lines():
    """functions-framework serves requests on several threads of one process: each
    request's binding is its own, even while another's is active."""
    other = "a" * 32
    both_bound = threading.Barrier(2)
    all_logged = threading.Barrier(3)

    def request(logger, trace_id, name):
        with tracing.bound(Trace(trace_id), "my-project"):
            both_bound.wait(timeout=10)  # both bindings are active at once
            logger.info(name)
            all_logged.wait(timeout=10)

    def unbound(logger):
        logger.info("no trace")
        all_logged.wait(timeout=10)

    def run(logger):
        threads = [
            threading.Thread(target=request, args=(logger, TRACE, "first")),
            threading.Thread(target=request, args=(logger, other, "second")),
            threading.Thread(target=unbound, args=(logger,)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    lines = {line["message"]: line for line in formatted_lines(run)}
    assert lines["first"][TRACE_FIELD] == f"projects/my-project/traces/{TRACE}"
    assert lines["second"][TRACE_FIELD] == f"projects/my-project/traces/{other}"
    assert TRACE_FIELD not in lines["no trace"]


def test_a_request_through_the_endpoint_logs_its_lines_under_its_trace(monkeypatch):
    from common import http

    monkeypatch.setattr(http, "authenticate", lambda request, rid: (_ for _ in ()).throw(AssertionError))
    app = flask.Flask(__name__)

    def run(logger):
        def handler(request, caller):
            raise AssertionError("not reached")

        with app.test_request_context("/", headers={"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}):
            logging.getLogger("ledger.http").addHandler(logger.handlers[0])
            try:
                endpoint(handler)(flask.request)
            finally:
                logging.getLogger("ledger.http").removeHandler(logger.handlers[0])

    lines = formatted_lines(run)
    assert lines and all(line[TRACE_FIELD].endswith(f"/traces/{TRACE}") for line in lines)
    assert {line[SPAN_FIELD] for line in lines} == {"0000000000000001"}


def test_a_cloud_events_lines_carry_the_trace_of_its_traceparent_extension():
    from cloudevents.http import CloudEvent

    from common import cloud_events

    event = CloudEvent(
        {"id": "m-1", "source": "//pubsub.googleapis.com/projects/p/topics/t", "type": "t",
         "traceparent": f"00-{TRACE}-{SPAN}-01"},
        {"message": {}},
    )  # fmt: skip

    def run(logger):
        cloud_events.pubsub_function("lot_expiry")(lambda cloud_event: logger.info("tick"))(event)

    (line,) = formatted_lines(run)
    assert line[TRACE_FIELD].endswith(f"/traces/{TRACE}") and line[SPAN_FIELD] == SPAN
