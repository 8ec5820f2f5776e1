"""The HTTP edge: one error shape, the status table, no stack trace ever."""

import io
import json

import flask
import pytest

from common import errors, http
from common.auth.callers import Caller, Principal
from common.http import endpoint, money_action
from common.idempotency import Outcome
from common.ledger.commands import TopUp
from common.rate_limits import Decision, Rate

app = flask.Flask(__name__)
JSON = "application/json"
UNIT_CALLER = Caller(Principal("unit", "unit", "unit", "service", "unit"), "r")


@pytest.fixture(autouse=True)
def authenticated(monkeypatch):
    monkeypatch.setattr(http, "authenticate", lambda request, request_id: UNIT_CALLER)
    monkeypatch.setattr(http, "rate_limit", lambda caller, action_class: Decision.unenforced(Rate(1, 1)))


def call(handler, body=b"{}", headers=None, method="POST", path="/"):
    with app.test_request_context(path, method=method, data=body, headers={"Content-Type": JSON, **(headers or {})}):
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
    def handler(request, caller):
        raise error

    response = call(handler)
    body = json.loads(response.get_data())
    assert response.status_code == status
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == error.code


def test_an_unexpected_error_is_a_500_without_its_traceback():
    def handler(request, caller):
        raise RuntimeError("secret internals")

    response = call(handler)
    assert response.status_code == 500
    assert b"secret internals" not in response.get_data() and b"Traceback" not in response.get_data()
    assert json.loads(response.get_data())["error"]["code"] == "internal_error"


def test_an_unexpected_error_of_a_money_action_never_claims_nothing_was_posted():
    """It may have happened after the posting committed: the caller retries with its key."""

    def handler(request, caller):
        raise RuntimeError("after the commit")

    body = json.loads(call(handler).get_data())
    assert "nothing was posted" not in body["error"]["message"]
    assert "same Idempotency-Key" in body["error"]["message"]


def test_only_a_conflict_a_retry_can_settle_says_when_to_retry():
    def raising(error):
        def handler(request, caller):
            raise error

        return handler

    held = call(raising(errors.InProgress("held", code="wallet_locked")))
    posted = call(
        raising(errors.AlreadyPosted("posted", code="usage_id_already_posted", details={"transaction_id": 7}))
    )
    assert (held.status_code, posted.status_code) == (409, 409)
    assert held.headers["Retry-After"] == "1" and "Retry-After" not in posted.headers
    assert json.loads(posted.get_data())["error"]["details"] == {"transaction_id": 7}


def test_a_replayed_outcome_is_marked():
    body = json.dumps({"wallet_id": 1, "asset": "IDR", "amount": 5, "external_ref": "r"}).encode()
    seen = []

    def action(caller, command, key):
        seen.append((caller, command.amount, key))
        return Outcome(201, {"ok": True}, replayed=True)

    response = call(
        lambda request, caller: money_action(request, caller, TopUp, action, function="topup"),
        body,
        {"Idempotency-Key": "k1"},
    )
    assert response.status_code == 201 and response.headers["Idempotent-Replayed"] == "true"
    assert seen == [(UNIT_CALLER, 5, "k1")]


def test_a_body_over_64_kib_is_a_413_before_it_is_parsed():
    def action(caller, command, key):
        raise AssertionError("never reached")

    body = b'{"pad": "' + b"x" * (64 * 1024) + b'"}'
    response = call(
        lambda request, caller: money_action(request, caller, TopUp, action, function="topup"),
        body,
        {"Idempotency-Key": "k1"},
    )
    assert response.status_code == 413 and json.loads(response.get_data())["error"]["code"] == "body_too_large"


def test_money_actions_accept_only_post():
    response = call(lambda request, caller: money_action(request, caller, TopUp, None, function="topup"), method="GET")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_responses_say_where_the_time_went():
    from common import timing

    def handler(request, caller):
        with timing.span("postgres"):
            pass
        with timing.span("postgres"):
            pass
        return flask.Response("{}", status=200)

    header = call(handler).headers["Server-Timing"]
    names = [part.split(";")[0] for part in header.split(", ")]
    assert names == ["postgres", "total"]


def test_a_missing_token_gets_the_scheme_and_a_bad_one_also_the_reason():
    missing = http.error_response(errors.Unauthenticated("no token", token_sent=False))
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="wallet-ledger"'
    bad = http.error_response(errors.Unauthenticated("the token does not verify: expired"))
    assert bad.headers["WWW-Authenticate"] == (
        'Bearer realm="wallet-ledger", error="invalid_token", error_description="the token does not verify: expired"'
    )


def test_a_spent_rate_limit_is_a_429_with_its_headers():
    limited = {"Retry-After": "2", "RateLimit-Limit": "40", "RateLimit-Remaining": "0", "RateLimit-Reset": "2"}

    def handler(request, caller):
        raise errors.RateLimited("slow down", headers=limited)

    response = call(handler)
    assert response.status_code == 429 and json.loads(response.get_data())["error"]["code"] == "rate_limited"
    assert {name: response.headers[name] for name in limited} == limited


REAL_AUTHENTICATE = http.authenticate
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_every_answer_names_the_servers_request_id_never_the_callers():
    def handler(request, caller):
        return flask.Response("{}", status=200)

    for given in ("abc-123", "bad id with spaces", None):
        answered = call(handler, headers={"X-Request-Id": given} if given else {}).headers["X-Request-Id"]
        assert answered != given and len(answered) == 32 and int(answered, 16) >= 0
    # nor a trace id, which a client can force on Google's front end too
    traced = call(handler, headers={"X-Request-Id": "abc-123", "X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
    assert traced.headers["X-Request-Id"] != TRACE and len(traced.headers["X-Request-Id"]) == 32


class RecordingAuthenticator:
    def caller(self, authorization, request_id, client_request_id=None, forwarded_authorization=None):
        return Caller(UNIT_CALLER.principal, request_id, client_request_id)


@pytest.mark.parametrize(("given", "kept"), [("abc-123", "abc-123"), ("bad id with spaces", None), (None, None)])
def test_the_callers_request_id_is_kept_beside_the_servers_in_the_actor_and_the_log(monkeypatch, caplog, given, kept):
    from common import bootstrap

    monkeypatch.setattr(http, "authenticate", REAL_AUTHENTICATE)
    monkeypatch.setattr(bootstrap, "authenticator", RecordingAuthenticator)
    seen = []

    def handler(request, caller):
        seen.append(caller.actor())
        return flask.Response("{}", status=200)

    headers = {"X-Cloud-Trace-Context": f"{TRACE}/1", **({"X-Request-Id": given} if given else {})}
    with caplog.at_level("INFO", logger="ledger.http"):
        call(handler, headers=headers)
    assert seen[0]["request_id"] != TRACE and len(seen[0]["request_id"]) == 32
    assert seen[0].get("client_request_id") == kept and ("client_request_id" in seen[0]) == (kept is not None)
    logged = next(r for r in caplog.records if r.getMessage() == "request")
    assert (logged.request_id, logged.client_request_id, logged.trace) == (seen[0]["request_id"], kept, TRACE)


def topup_body_answer(raw, environ=None, content_type=JSON):
    def action(caller, command, key):
        raise AssertionError("never reached")

    headers = {"Idempotency-Key": "k", **({"Content-Type": content_type} if content_type is not None else {})}
    with app.test_request_context(
        "/", method="POST", input_stream=io.BytesIO(raw), headers=headers, environ_overrides=environ
    ):
        return endpoint(lambda request, caller: money_action(request, caller, TopUp, action, function="topup"))(
            flask.request
        )


def test_a_key_twice_in_one_object_is_a_400_naming_it():
    response = topup_body_answer(
        b'{"wallet_id": 1, "amount": 5, "amount": 500000, "asset": "IDR", "external_ref": "r"}'
    )
    body = json.loads(response.get_data())
    assert response.status_code == 400 and body["error"]["code"] == "invalid_json"
    assert body["error"]["details"] == {"keys": ["amount"]}


def test_a_body_nested_too_deeply_is_a_400_not_a_500():
    response = topup_body_answer(b"[" * 20_000 + b"]" * 20_000)
    assert response.status_code == 400 and json.loads(response.get_data())["error"]["code"] == "invalid_json"


def nested(levels):
    """A JSON object `levels` arrays and objects deep, alternating (the top one is level 1)."""
    body = "1"
    for level in range(levels, 0, -1):
        body = f'{{"a": {body}}}' if level % 2 else f"[{body}]"
    return body.encode()


def json_object_answer(raw):
    return call(lambda request, caller: http.json_response(200, {"depth_ok": bool(http.json_object(request))}), raw)


def test_a_body_nested_to_the_limit_is_read():
    assert http.MAX_JSON_DEPTH == 32
    response = json_object_answer(nested(32))
    assert response.status_code == 200, response.get_data()


@pytest.mark.parametrize("levels", [33, 500])
def test_a_body_nested_past_the_limit_is_a_400_naming_it(levels):
    """Well within what the parser's recursion allows, so only the explicit limit refuses it."""
    response = json_object_answer(nested(levels))
    error = json.loads(response.get_data())["error"]
    assert response.status_code == 400 and error["code"] == "invalid_json"
    assert "32 levels" in error["message"] and error["details"] == {"max_depth": 32}


def test_a_chunked_body_over_the_limit_is_a_413_and_is_not_read_whole():
    class Endless(io.RawIOBase):
        """A body that never ends, as a chunked upload without a length can be."""

        read_so_far = 0

        def readinto(self, buffer):
            buffer[:] = b" " * len(buffer)
            Endless.read_so_far += len(buffer)
            return len(buffer)

        def readable(self):
            return True

    stream = io.BufferedReader(Endless())
    response = topup_body_answer(b"", environ={"wsgi.input": stream, "wsgi.input_terminated": True})
    assert response.status_code == 413 and json.loads(response.get_data())["error"]["code"] == "body_too_large"
    assert Endless.read_so_far < 4 * 64 * 1024


TOPUP = json.dumps({"wallet_id": 1, "asset": "IDR", "amount": 5, "external_ref": "r"}).encode()


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json-patch+json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ],
)
def test_a_body_not_declared_json_is_a_415_and_is_not_read(content_type):
    response = topup_body_answer(TOPUP, content_type=content_type)
    assert response.status_code == 415
    assert json.loads(response.get_data())["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_a_json_body_is_read_with_or_without_its_charset(content_type):
    seen = []

    def action(caller, command, key):
        seen.append(command.amount)
        return Outcome(201, {"ok": True})

    response = call(
        lambda request, caller: money_action(request, caller, TopUp, action, function="topup"),
        TOPUP,
        {"Idempotency-Key": "k", "Content-Type": content_type},
    )
    assert response.status_code == 201 and seen == [5]


@pytest.mark.parametrize("path", ["/", "/topup", "/topup/"])
def test_a_money_action_answers_on_its_own_path(path):
    def action(caller, command, key):
        return Outcome(201, {"ok": True})

    handler = lambda request, caller: money_action(request, caller, TopUp, action, function="topup")  # noqa: E731
    assert call(handler, TOPUP, {"Idempotency-Key": "k"}, path=path).status_code == 201


@pytest.mark.parametrize("path", ["/usage", "/topup/x", "/wallets/16", "/topup/topup", "/x/topup"])
def test_a_money_action_on_any_other_path_is_a_404_and_never_runs(path):
    def action(caller, command, key):
        raise AssertionError("never reached")

    handler = lambda request, caller: money_action(request, caller, TopUp, action, function="topup")  # noqa: E731
    response = call(handler, TOPUP, {"Idempotency-Key": "k"}, path=path)
    assert response.status_code == 404 and json.loads(response.get_data())["error"]["code"] == "route_not_found"


def _derived_keys() -> list[str]:
    """Keys the ledger derives for its own postings (automation, bulk intake, lot expiry)."""
    from common.automation import allocate_key, topup_key
    from common.intake import usage_key

    return [
        topup_key(7, "event:12"),
        allocate_key(7, "period:2026-11-01T00:00:00Z", 16),
        usage_key("u-1"),
        "lot-expiry:3:1",
    ]


@pytest.mark.parametrize("key", _derived_keys())
def test_a_money_action_refuses_a_key_the_ledger_derives_for_itself(key):
    """Else a caller could post first under the key of the automation's or the intake's next posting."""

    def action(caller, command, key):
        raise AssertionError("never reached")

    handler = lambda request, caller: money_action(request, caller, TopUp, action, function="topup")  # noqa: E731
    response = call(handler, TOPUP, {"Idempotency-Key": key})
    error = json.loads(response.get_data())["error"]
    assert response.status_code == 400 and error["code"] == "idempotency_key_invalid" and "reserves" in error["message"]


def test_the_service_still_takes_the_keys_it_derives():
    from common.idempotency import validate_key

    assert [validate_key(key) for key in _derived_keys()] == _derived_keys()
