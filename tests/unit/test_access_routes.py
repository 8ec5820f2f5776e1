"""The access function's routes, with a stand-in service: which call each path reaches,
with or without the leading /access, names and ids in the path, and the 400, 404 and
405 answers around them."""

import importlib.util
import json
from pathlib import Path

import flask
import pytest

from common import bootstrap, http
from common.auth.callers import SCOPES, Caller, Grant, Principal
from common.rate_limits import Decision, Rate

UNIT_CALLER = Caller(
    Principal("unit", "unit", "unit", "operator", "unit", grants=(Grant("t", frozenset(SCOPES), "all"),)), "r"
)
MAIN = Path(__file__).resolve().parents[2] / "functions" / "access" / "main.py"
app = flask.Flask(__name__)


def load_access():
    spec = importlib.util.spec_from_file_location("access_main", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.access


access = load_access()


class RecordingService:
    """Answers every call with its own name and arguments (commands as plain data)."""

    def __getattr__(self, name):
        def record(caller, *args):
            assert caller is UNIT_CALLER  # every call carries the verified caller
            return {
                "call": name,
                "args": [a.model_dump(exclude_unset=True) if hasattr(a, "model_dump") else a for a in args],
            }

        return record


@pytest.fixture(autouse=True)
def service(monkeypatch):
    monkeypatch.setattr(bootstrap, "access_service", RecordingService)
    monkeypatch.setattr(http, "authenticate", lambda request, request_id: UNIT_CALLER)
    monkeypatch.setattr(http, "rate_limit", lambda caller, action_class: Decision.unenforced(Rate(1, 1)))


def call(method, path, body=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    with app.test_request_context(path, method=method, data=data, content_type="application/json"):
        response = access(flask.request)
    return response.status_code, json.loads(response.get_data())


def recorded(body):
    return body if "call" in body else next(iter(body.values()))  # bare, or under its noun


PRINCIPAL = {"id": "svc-1", "issuer": "https://accounts.google.com", "kind": "service", "tenant": "t1"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "call_name", "args"),
    [
        ("GET", "/principals", None, 200, "list_principals", [{}]),
        ("GET", "/access/principals?after=a&limit=5", None, 200, "list_principals", [{"after": "a", "limit": 5}]),
        ("POST", "/principals", PRINCIPAL, 201, "create_principal", [PRINCIPAL]),
        ("GET", "/principals/svc-1", None, 200, "get_principal", ["svc-1"]),
        ("GET", "/access/principals/user@example.com", None, 200, "get_principal", ["user@example.com"]),
        ("GET", "/principals/sa:123.x_y-z", None, 200, "get_principal", ["sa:123.x_y-z"]),
        (
            "PATCH",
            "/principals/svc-1",
            {"status": "disabled"},
            200,
            "update_principal",
            ["svc-1", {"status": "disabled"}],
        ),
        (
            "POST",
            "/principals/svc-1/grants",
            {"role": "customer", "boundary": "own"},
            201,
            "grant_role",
            ["svc-1", {"role": "customer", "boundary": "own"}],
        ),
        ("POST", "/grants/7/revoke", {"reason": "left"}, 200, "revoke_grant", [7, {"reason": "left"}]),
        ("POST", "/access/grants/7/revoke", None, 200, "revoke_grant", [7, {}]),  # no body: no reason
        ("GET", "/roles", None, 200, "list_roles", []),
        (
            "PATCH",
            "/roles/customer",
            {"rate_limits": {"read": {"burst": 5}}},
            200,
            "set_role_rate_limits",
            ["customer", {"rate_limits": {"read": {"burst": 5}}}],
        ),
        ("GET", "/changes", None, 200, "list_changes", [{}]),
        ("GET", "/changes?status=all&after=3", None, 200, "list_changes", [{"status": "all", "after": 3}]),
        ("POST", "/changes/3/approve", {}, 200, "decide_change", [3, True, {}]),
        ("POST", "/changes/3/reject", {"reason": "no"}, 200, "decide_change", [3, False, {"reason": "no"}]),
        (
            "GET",
            "/audit?target=principal:svc-1&limit=2",
            None,
            200,
            "audit",
            [{"target": "principal:svc-1", "limit": 2}],
        ),
        ("GET", "/access/audit", None, 200, "audit", [{}]),
    ],
)
def test_each_path_reaches_its_call_with_or_without_the_prefix(method, path, body, status, call_name, args):
    answered, answer = call(method, path, body)
    assert answered == status and recorded(answer) == {"call": call_name, "args": args}


@pytest.mark.parametrize("bad", ["a%20b", "%C2%B2", "x" * 129, "a%00b", "semi;colon"])
@pytest.mark.parametrize(("method", "template"), [("GET", "/principals/{}"), ("POST", "/principals/{}/grants")])
def test_a_name_that_cannot_exist_is_a_400(bad, method, template):
    status, body = call(method, template.format(bad), {"role": "customer", "boundary": "all"})
    assert (status, body["error"]["code"]) == (400, "invalid_id")


@pytest.mark.parametrize("bad", ["0", "abc", "\u00b2", "-1", "9223372036854775808"])
@pytest.mark.parametrize("template", ["/grants/{}/revoke", "/changes/{}/approve", "/changes/{}/reject"])
def test_an_id_that_cannot_exist_is_a_400(bad, template):
    status, body = call("POST", template.format(bad), {})
    assert (status, body["error"]["code"]) == (400, "invalid_id")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/principals/svc-1", ["GET", "PATCH"]),
        ("PUT", "/principals", ["GET", "POST"]),
        ("GET", "/principals/svc-1/grants", ["POST"]),
        ("GET", "/grants/1/revoke", ["POST"]),
        ("POST", "/roles", ["GET"]),
        ("GET", "/roles/customer", ["PATCH"]),
        ("GET", "/changes/1/approve", ["POST"]),
        ("POST", "/audit", ["GET"]),
    ],
)
def test_a_method_the_path_does_not_take_is_a_405_naming_those_it_does(method, path, allowed):
    status, body = call(method, path)
    assert status == 405 and body["error"]["details"] == {"allowed": allowed}


@pytest.mark.parametrize("path", ["/", "/grants/1", "/changes/1", "/principals/a/b", "/access/access/principals"])
def test_any_other_path_is_a_404(path):
    status, body = call("GET", path)
    assert (status, body["error"]["code"]) == (404, "route_not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/principals", {**PRINCIPAL, "extra": 1}),
        ("POST", "/principals", {**PRINCIPAL, "id": "has space"}),
        ("POST", "/principals", {**PRINCIPAL, "kind": "robot"}),
        ("POST", "/principals", {**PRINCIPAL, "issuer": "a\u0000b"}),
        ("POST", "/principals", {**PRINCIPAL, "rate_limits": {"money": {"per_second": True}}}),
        ("POST", "/principals", {**PRINCIPAL, "rate_limits": {"writes": {"burst": 5}}}),
        ("POST", "/principals", {**PRINCIPAL, "rate_limits": {"money": {"burst": 0}}}),
        ("PATCH", "/principals/svc-1", {"reason": "nothing to change"}),
        ("PATCH", "/principals/svc-1", {"status": "deleted"}),
        ("POST", "/principals/svc-1/grants", {"role": "customer", "boundary": "tree"}),  # no root
        ("POST", "/principals/svc-1/grants", {"role": "customer", "boundary": "own", "root_wallet_id": 3}),
        ("POST", "/principals/svc-1/grants", {"role": "Not A Role", "boundary": "all"}),
        ("PATCH", "/roles/customer", {"rate_limits": {"read": {"per_second": 1e9}}}),
        ("POST", "/changes/1/approve", {"reason": "x" * 501}),
        ("GET", "/audit?limit=0", None),
        ("GET", "/audit?after=-1", None),
        ("GET", "/changes?status=maybe", None),
        ("GET", "/principals?colour=red", None),
    ],
)
def test_a_request_the_models_refuse_is_a_400_before_the_service(method, path, body):
    status, answer = call(method, path, body)
    assert (status, answer["error"]["code"]) == (400, "validation_failed")


def test_a_body_that_is_not_json_is_a_400():
    status, body = call("POST", "/changes/1/approve", raw=b"{not json")
    assert (status, body["error"]["code"]) == (400, "invalid_json")


@pytest.mark.parametrize(
    ("method", "path", "body", "action_class"),
    [
        ("GET", "/principals", None, "read"),
        ("GET", "/audit", None, "read"),
        ("POST", "/principals", PRINCIPAL, "admin"),
        ("PATCH", "/roles/customer", {"rate_limits": {"read": {"burst": 5}}}, "admin"),
        ("POST", "/changes/3/approve", {}, "admin"),
    ],
)
def test_reads_spend_from_the_read_limit_and_writes_from_the_admin_one(monkeypatch, method, path, body, action_class):
    spent = []
    monkeypatch.setattr(http, "rate_limit", lambda caller, cls: spent.append(cls) or Decision.unenforced(Rate(1, 1)))
    call(method, path, body)
    assert spent == [action_class]  # managing callers is admin work, never the money class
