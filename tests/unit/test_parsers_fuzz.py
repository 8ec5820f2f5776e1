"""Hypothesis against the parsers of the HTTP edge (issue 14): whatever arrives, a parser
either accepts it or raises the project's own error, which the edge answers with a 4xx.
Never an unhandled exception (a 500), and nothing accepted that Postgres can't hold.

What is fuzzed: request bodies (common/http.py json_object), the command and query
models (common/ledger/commands.py, common/auth/commands.py) through `parse`, cursors
(common/cursors.py), and the wallets, access and a money function whole, in process,
with a stand-in service: routing ids and names, query integers and flags, methods,
content types and bodies together.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import flask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from common import bootstrap, http
from common.auth import commands as auth_commands
from common.auth.callers import SCOPES, Caller, Grant, Principal
from common.cursors import Cursors, history_scope
from common.errors import LedgerError
from common.idempotency import Outcome
from common.ledger import commands as ledger_commands
from common.rate_limits import Decision, Rate

# Enough to reach every branch of the parsers in a few seconds a test; `make fuzz` is the
# long run (Schemathesis, over HTTP).
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_MODEL = settings(FUZZ, max_examples=80)
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
CALLER = Caller(
    Principal("fuzz", "fuzz", "fuzz", "service", "fuzz", grants=(Grant("t", frozenset(SCOPES), "all"),)), "r"
)
app = flask.Flask(__name__)

# Values chosen to sit on the edges the parsers guard: int64's bounds, digits that are
# not ASCII, text Postgres can't hold, times whose zone or year Postgres refuses.
EDGE_INTS = st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30])
EDGE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\u00b2",
        "\u0663",
        "1e3",
        "10.0",
        "NaN",
        "Infinity",
        "true",
        "null",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00+15:00",
        "9999-12-31T23:59:59-15:00",
        "x" * 300,
        "IDR",
        "usage",
        "closed",
        "tree",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    EDGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    EDGE_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10) | EDGE_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def models() -> list[type[BaseModel]]:
    found = []
    for module in (ledger_commands, auth_commands):
        for _, model in inspect.getmembers(module, inspect.isclass):
            if issubclass(model, BaseModel) and model.__module__ == module.__name__ and model.model_fields:
                found.append(model)
    return found


def field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


# A plausible value per field name, so that a drawn request is often valid but for the
# one or two fields fuzzed: the checks on accepted values need accepted values.
PLAUSIBLE: dict[str, Any] = {
    **dict.fromkeys(["wallet_id", "from_wallet_id", "transaction_id", "parent_id", "root_wallet_id"], 16),
    "to_wallet_id": 17,
    **{"asset": "IDR", "code": "EUR", "amount": 100, "price": 50, "scale": 2, "credit_limit": 0},
    **{"external_ref": "psp_1", "usage_id": "u-1", "product": "gpu", "plan": "pro", "campaign": "spring"},
    **{"expires_at": "2099-01-01T00:00:00Z", "description": "d", "reason": "why", "metadata": {"k": "v"}},
    **{"owner_id": "alice", "model": "personal", "status": "active", "spend_limits": {"day": 5}},
    **{"id": "svc-1", "issuer": "https://issuer.example", "subject": "sub", "kind": "service", "tenant": "t1"},
    **{"rate_limits": {"money": {"per_second": 1.0, "burst": 2}}, "role": "tester", "boundary": "all"},
    **{"per_second": 1.0, "burst": 2, "money": {"per_second": 1.0}, "read": {"burst": 3}, "admin": {}},
    **{"action": "usage", "from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00+07:00", "limit": 10},
    **{"cursor": "AAAAAAAAAB1wUla9eViRp43wvm8fYwXx", "after": 0, "target": "wallet:16"},
}


@st.composite
def near_valid(draw, model: type[BaseModel], values: st.SearchStrategy[Any]) -> dict[str, Any]:
    """The model's fields with plausible values, then up to three of them dropped,
    replaced with fuzz, or given a character Postgres or int() can't take (or a stray
    field added)."""
    data = {name: PLAUSIBLE[name] for name in field_names(model) if name in PLAUSIBLE}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*field_names(model), "unexpected"]))
        change = draw(st.sampled_from(["replace", "drop", "spoil"]))
        if change == "replace":
            data[name] = draw(values)
        elif change == "drop":
            data.pop(name, None)
        elif isinstance(data.get(name), (str, int)) and not isinstance(data.get(name), bool):
            text = str(data[name])
            at = draw(st.integers(0, len(text)))
            data[name] = text[:at] + draw(st.sampled_from(["\x00", "\ud800", "\u00b2", "\u0663", " "])) + text[at:]
    return data


def storable(value: Any) -> None:
    """What Postgres must be able to hold: text without NUL in UTF-8, int64, times with a
    UTC equivalent."""
    if isinstance(value, str):
        assert "\x00" not in value
        value.encode("utf-8")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        assert -(2**63) <= value < 2**63
    elif isinstance(value, datetime):
        value.astimezone(UTC)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            storable(item)


def parses_or_refuses(model: type[BaseModel], data: Any) -> None:
    try:
        parsed = http.parse(model, data)
    except LedgerError as error:
        assert 400 <= error.status < 500
        return
    # a cursor is never stored: common/cursors.py reads it (its own tests fuzz that)
    storable(parsed.model_dump(exclude={"cursor"}))


@pytest.mark.parametrize("model", models(), ids=lambda model: model.__name__)
@FUZZ_MODEL
@given(data=st.data())
def test_every_command_and_query_model_parses_or_refuses_with_a_4xx(model, data):
    if model.model_config.get("strict"):  # a JSON body: any JSON value
        parses_or_refuses(model, data.draw(st.one_of(near_valid(model, EDGE_TEXT | JSON_VALUES), JSON_VALUES)))
    else:  # a query string: text values only
        text = st.one_of(st.text(max_size=30), EDGE_TEXT, st.integers().map(str))
        query = data.draw(near_valid(model, text))
        parses_or_refuses(model, {name: str(value) for name, value in query.items()})


CONTENT_TYPES = st.one_of(
    st.just("application/json"),
    st.sampled_from(["", "text/plain", "application/json; charset=utf-16", "application/json;charset=UTF-8"]),
    st.text(string.printable.strip() + " ", max_size=30),  # a header's value holds no line break
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 5000, b'{"a": 1, "a": 2}', b"\xff\xfe", b'{"a": "\\ud800"}', b"1e99999", b"-"]),
)


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_a_body_is_a_json_object_or_a_4xx(body, content_type):
    with app.test_request_context("/", method="POST", data=body, headers={"Content-Type": content_type}):
        try:
            parsed = http.json_object(flask.request)
        except LedgerError as error:
            assert 400 <= error.status < 500
            return
    assert isinstance(parsed, dict)


@FUZZ
@given(
    cursor=st.one_of(
        st.text(max_size=40), st.text(string.ascii_letters + string.digits + "-_", min_size=32, max_size=32)
    )
)
def test_a_cursor_decodes_or_is_a_400(cursor):
    cursors = Cursors(b"f" * 32)
    scope = history_scope(1, "t", None, None, None)
    try:
        position = cursors.decode(cursor, scope)
    except LedgerError as error:
        assert (error.status, error.code) == (400, "invalid_cursor")
        return
    assert cursors.encode(position, scope) == cursor  # only what was signed comes back


# The functions whole, with a stand-in service -----------------------------------------

ANSWERED_AS_OUTCOMES = {"top_up", "add_on", "bonus", "usage", "transfer", "void", "allocate", "reclaim", "extend_lot"}


class StandInService:
    """Accepts every call: what is fuzzed is everything before the service."""

    def __getattr__(self, name):
        def call(caller, *args):
            return Outcome(201, {"ok": True}) if name in ANSWERED_AS_OUTCOMES else {"ok": name}

        return call


def load(function: str):
    spec = importlib.util.spec_from_file_location(f"{function}_main_for_fuzz", FUNCTIONS / function / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def stand_ins():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bootstrap, "service", StandInService)
        patch.setattr(bootstrap, "access_service", StandInService)
        patch.setattr(http, "authenticate", lambda request, request_id: CALLER)
        patch.setattr(http, "rate_limit", lambda caller, action_class: Decision.unenforced(Rate(1, 1)))
        yield


SEGMENTS = st.one_of(
    st.sampled_from(
        ["wallets", "lots", "transactions", "assets", "history", "lots", "rollup", "members", "extend", "topup"]
        + ["principals", "grants", "revoke", "roles", "changes", "approve", "reject", "audit", "access"]
    ),
    st.integers(min_value=-5, max_value=2**64).map(str),
    EDGE_TEXT,
    st.text(max_size=12),
)
QUERY_KEYS = st.sampled_from(
    ["limit", "after", "cursor", "action", "from", "to", "all", "owner_id", "status", "target", "x"]
)
QUERY_VALUES = st.one_of(EDGE_TEXT, st.integers().map(str), st.text(max_size=20))


QUERY_TEXT = st.one_of(EDGE_TEXT, st.text(max_size=25), st.integers().map(str), st.integers(0, 600).map(str))


@FUZZ
@given(raw=QUERY_TEXT, flag=QUERY_TEXT)
def test_a_query_integer_or_flag_is_within_its_bounds_or_a_400(raw, flag):
    wallets = load_cached("wallets")
    with app.test_request_context("/", query_string=urlencode({"limit": wire(raw), "all": wire(flag)})):
        for parse_query in (
            lambda: wallets._bounded(flask.request, "limit", 100, 1, 500),
            lambda: wallets._flag(flask.request, "all"),
        ):
            try:
                value = parse_query()
            except LedgerError as error:
                assert error.status == 400
                continue
            assert value in (True, False) or 1 <= value <= 500


def templates(function: str) -> list[str]:
    """The function's route templates ("/" for a money function), to fill with fuzz."""
    module = load_cached(function)
    return list(module.ROUTES.table) if hasattr(module, "ROUTES") else ["/"]


@st.composite
def paths(draw, function: str) -> list[str]:
    """Mostly a route of the function with fuzz in its ids and names (and its name in
    front or not, as deployed URLs may keep it), sometimes any segments at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.lists(SEGMENTS, max_size=4))
    template = draw(st.sampled_from(templates(function)))
    segments = [
        draw(st.one_of(SEGMENTS, st.integers(min_value=-1, max_value=2**64).map(str))) if part.startswith("<") else part
        for part in template.split("/")
        if part
    ]
    return ([function] if draw(st.booleans()) else []) + segments


@pytest.mark.parametrize("function", ["wallets", "access", "topup"])
@FUZZ
@given(
    data=st.data(),
    method=st.sampled_from(["GET", "POST", "PATCH", "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]),
    query=st.dictionaries(QUERY_KEYS, QUERY_VALUES, max_size=4),
    body=BODIES,
    content_type=CONTENT_TYPES,
)
def test_no_request_gets_a_500(function, data, method, query, body, content_type):
    handler = getattr(load_cached(function), function)
    segments = data.draw(paths(function))
    # As a WSGI server hands them over: the path's bytes (a lone surrogate becomes bytes
    # that are not UTF-8, a / inside a segment stays %2F) as latin-1, the query undecoded.
    raw_path = b"/" + b"/".join(wire(segment).replace(b"/", b"%2F") for segment in segments)
    query_string = urlencode({key: wire(value) for key, value in query.items()})
    headers = {"Content-Type": content_type, "Idempotency-Key": "fuzz"}
    with app.test_request_context(
        "/",
        method=method,
        data=body,
        headers=headers,
        query_string=query_string,
        environ_overrides={"PATH_INFO": raw_path.decode("latin-1")},
    ):
        response = handler(flask.request)
    assert response.status_code < 500, (method, raw_path, query_string, body[:100], response.get_data()[:300])


def wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


_handlers: dict[str, Any] = {}


def load_cached(function: str):
    if function not in _handlers:
        _handlers[function] = load(function)
    return _handlers[function]
