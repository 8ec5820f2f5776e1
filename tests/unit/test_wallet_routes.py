"""The wallets function's routes, with a stand-in service: which call each path reaches,
with or without the leading /wallets, and the 400, 404 and 405 answers around them."""

import importlib.util
import json
from pathlib import Path

import flask
import pytest

from common import bootstrap, http
from common.auth.callers import SCOPES, Caller, Grant, Principal
from common.rate_limits import Decision, Rate

UNIT_CALLER = Caller(
    Principal("unit", "unit", "unit", "service", "unit", grants=(Grant("t", frozenset(SCOPES), "all"),)), "r"
)

MAIN = Path(__file__).resolve().parents[2] / "functions" / "wallets" / "main.py"
app = flask.Flask(__name__)


def load_wallets():
    spec = importlib.util.spec_from_file_location("wallets_main", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.wallets


wallets = load_wallets()


class RecordingService:
    """Answers every call with its own name and arguments (commands as plain data)."""

    def __getattr__(self, name):
        def record(caller, *args):
            assert caller is UNIT_CALLER  # every call carries the verified caller
            return {"call": name, "args": [a.model_dump() if hasattr(a, "model_dump") else a for a in args]}

        return record


@pytest.fixture(autouse=True)
def service(monkeypatch):
    monkeypatch.setattr(bootstrap, "service", RecordingService)
    monkeypatch.setattr(http, "authenticate", lambda request, request_id: UNIT_CALLER)
    monkeypatch.setattr(http, "rate_limit", lambda caller, action_class: Decision.unenforced(Rate(1, 1)))


def call(method, path, body=None):
    data = None if body is None else json.dumps(body)
    with app.test_request_context(path, method=method, data=data, content_type="application/json"):
        response = wallets(flask.request)
    return response.status_code, json.loads(response.get_data())


@pytest.mark.parametrize(
    ("method", "path", "call_name", "args"),
    [
        ("GET", "/16", "get_wallet", [16]),
        ("GET", "/wallets/16", "get_wallet", [16]),
        ("GET", "/wallets/16/", "get_wallet", [16]),
        ("GET", "/?owner_id=o", "list_wallets", ["o"]),
        ("GET", "/wallets?owner_id=o", "list_wallets", ["o"]),
        ("GET", "/16/rollup", "rollup", [16]),
        ("GET", "/wallets/16/lots?all=true", "lots", [16, True]),
        ("GET", "/16/members?after=3&limit=1", "members", [16, 3, 1]),
        ("GET", "/16/members", "members", [16, 0, 100]),
        ("GET", "/16/lots?all=false", "lots", [16, False]),
        ("GET", "/lots/1", "get_lot", [1]),
        ("GET", "/wallets/lots/1", "get_lot", [1]),
        ("GET", "/transactions/14", "get_transaction", [14]),
        ("GET", "/wallets/transactions/14", "get_transaction", [14]),
        ("GET", "/assets", "list_assets", []),
        ("GET", "/wallets/assets", "list_assets", []),
        ("GET", "/16/rules", "list_rules", [16]),
        ("GET", "/rules/3", "get_rule", [3]),
        ("GET", "/wallets/rules/3", "get_rule", [3]),
        ("POST", "/rules/3/pause", "pause_rule", [3]),
        ("POST", "/wallets/rules/3/resume", "resume_rule", [3]),
        ("DELETE", "/rules/3", "delete_rule", [3]),
    ],
)
def test_each_path_reaches_its_call_with_or_without_the_prefix(method, path, call_name, args):
    status, body = call(method, path)
    recorded = body if "call" in body else next(iter(body.values()))  # bare, or under its noun
    assert status == 200 and recorded == {"call": call_name, "args": args}


@pytest.mark.parametrize(
    "path",
    [
        "/16/members?limit=0",
        "/16/members?limit=501",
        "/16/members?after=-1",
        "/16/lots?all=yes",
        "/16/lots?all=",
        "/wallets",
        "/wallets?owner_id=",
        "/wallets?owner_id=a%00b",
        "/wallets?owner_id=o&unknown=1",
        "/16/history?to=0.5",
        "/16/history?from=2026-01-01T00:00:00",
    ],
)
def test_a_query_outside_its_bounds_is_a_400(path):
    status, body = call("GET", path)
    assert (status, body["error"]["code"]) == (400, "validation_failed")


def test_writes_parse_their_body():
    status, body = call("PATCH", "/wallets/16", {"status": "frozen"})
    assert status == 200 and body["wallet"]["call"] == "update_wallet" and body["wallet"]["args"][0] == 16
    status, body = call("POST", "/assets", {"code": "ABC", "scale": 2})
    assert status == 201 and body["asset"]["call"] == "create_asset"


@pytest.mark.parametrize("bad", ["0", "abc", "\u00b2", "\u0663", "-1", "9223372036854775808"])
@pytest.mark.parametrize("template", ["/wallets/{}", "/{}/history", "/lots/{}", "/lots/{}/extend", "/transactions/{}"])
def test_an_id_that_cannot_exist_is_a_400(bad, template):
    method = "POST" if template.endswith("extend") else "GET"
    status, body = call(method, template.format(bad), {"expires_at": "2099-01-01T00:00:00Z"})
    assert (status, body["error"]["code"]) == (400, "invalid_id")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/wallets/16", ["GET", "PATCH"]),
        ("HEAD", "/16", ["GET", "PATCH"]),
        ("POST", "/wallets/abc", ["GET", "PATCH"]),  # a wrong method is a 405 whatever the id
        ("PATCH", "/assets", ["GET", "POST"]),
        ("DELETE", "/wallets", ["GET", "POST"]),
        ("GET", "/lots/1/extend", ["POST"]),
        ("POST", "/16/history", ["GET"]),
    ],
)
def test_a_method_the_path_does_not_take_is_a_405_naming_those_it_does(method, path, allowed):
    with app.test_request_context(path, method=method):
        response = wallets(flask.request)
    body = json.loads(response.get_data())
    assert response.status_code == 405 and body["error"]["code"] == "method_not_allowed"
    assert body["error"]["details"] == {"allowed": allowed} and response.headers["Allow"] == ", ".join(allowed)


@pytest.mark.parametrize("path", ["/wallets/16/nope", "/lots/1/nope", "/nope/1/2", "/wallets/wallets/16", "/assets/1"])
def test_any_other_path_is_a_404(path):
    status, body = call("GET", path)
    assert (status, body["error"]["code"]) == (404, "route_not_found")


def test_a_rule_is_created_on_the_wallet_of_the_path():
    status, body = call("POST", "/wallets/16/rules", {"kind": "low_balance", "threshold": 500})
    assert status == 201
    assert body["rule"]["call"] == "create_rule"
    assert body["rule"]["args"][0] == 16 and body["rule"]["args"][1]["threshold"] == 500
