"""The HTTP edge: one error shape, the status table, no stack trace ever."""

import json

import flask
import pytest

from common import errors
from common.http import endpoint, money_action
from common.idempotency import Outcome
from common.ledger.commands import TopUp

app = flask.Flask(__name__)


def call(handler, body=b"{}", headers=None, method="POST"):
    with app.test_request_context("/", method=method, data=body, headers=headers or {}):
        return endpoint(handler)(flask.request)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequest("x"), 400),
        (errors.NotFound("x"), 404),
        (errors.MethodNotAllowed("x"), 405),
        (errors.PayloadTooLarge("x"), 413),
        (errors.InProgress("x"), 409),
        (errors.Refused("x", code="insufficient_funds"), 422),
        (errors.DependencyUnavailable("x"), 503),
    ],
)
def test_each_error_class_has_its_status_and_the_one_shape(error, status):
    def handler(request):
        raise error

    response = call(handler)
    body = json.loads(response.get_data())
    assert response.status_code == status
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == error.code


def test_an_unexpected_error_is_a_500_without_its_traceback():
    def handler(request):
        raise RuntimeError("secret internals")

    response = call(handler)
    assert response.status_code == 500
    assert b"secret internals" not in response.get_data() and b"Traceback" not in response.get_data()
    assert json.loads(response.get_data())["error"]["code"] == "internal_error"


def test_a_replayed_outcome_is_marked():
    body = json.dumps({"wallet_id": 1, "asset": "IDR", "amount": 5, "external_ref": "r"}).encode()
    seen = []

    def action(command, key):
        seen.append((command.amount, key))
        return Outcome(201, {"ok": True}, replayed=True)

    response = call(lambda request: money_action(request, TopUp, action), body, {"Idempotency-Key": "k1"})
    assert response.status_code == 201 and response.headers["Idempotent-Replayed"] == "true"
    assert seen == [(5, "k1")]


def test_a_body_over_64_kib_is_a_413_before_it_is_parsed():
    def action(command, key):
        raise AssertionError("never reached")

    body = b'{"pad": "' + b"x" * (64 * 1024) + b'"}'
    response = call(lambda request: money_action(request, TopUp, action), body, {"Idempotency-Key": "k1"})
    assert response.status_code == 413 and json.loads(response.get_data())["error"]["code"] == "body_too_large"


def test_money_actions_accept_only_post():
    response = call(lambda request: money_action(request, TopUp, None), method="GET")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_responses_say_where_the_time_went():
    from common import timing

    def handler(request):
        with timing.span("postgres"):
            pass
        with timing.span("postgres"):
            pass
        return flask.Response("{}", status=200)

    header = call(handler).headers["Server-Timing"]
    names = [part.split(";")[0] for part in header.split(", ")]
    assert names == ["postgres", "total"]
