"""Helpers for the integration and end-to-end tiers: owner-level SQL that goes around
the application, quick wallet setup, and the invariant check."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pg8000.native
import requests

from common.adapters.reconciliation import find_violations
from common.auth.callers import SCOPES, Caller, Grant, Principal
from emulators.stack import Stack

# The caller of integration tests that drive the service in-process: every scope over
# every wallet, in a tenant of its own. Authorization has its own tests
# (tests/unit/test_callers.py, tests/e2e/test_callers_http.py).
CALLER = Caller(
    Principal("tests", "tests", "tests", "service", "tests", grants=(Grant("tests", frozenset(SCOPES), "all"),)),
    request_id="tests",
)


class LedgerProxy:
    """A PostgresLedger stand-in that forwards everything; tests override `post` to
    inject what a crash or a racing copy would do around the real posting."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


def key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def owner(stack: Stack) -> pg8000.native.Connection:
    return pg8000.native.Connection(**stack.owner_dsn())


def sql(stack: Stack, statement: str, **params: Any) -> list[list[Any]]:
    con = owner(stack)
    try:
        return con.run(statement, **params)
    finally:
        con.close()


def ensure_asset(stack: Stack, code: str = "TST", scale: int = 0) -> str:
    if not sql(stack, "SELECT 1 FROM ledger.assets WHERE code = :c", c=code):
        sql(stack, "SELECT ledger.create_asset(:c, CAST(:s AS smallint))", c=code, s=scale)
    return code


def system_account(stack: Stack, asset: str, role: str) -> int:
    return sql(
        stack,
        "SELECT id FROM ledger.wallets WHERE kind = 'system' AND asset_code = :a AND system_role = :r",
        a=asset,
        r=role,
    )[0][0]


def new_wallet(stack: Stack, asset: str = "TST", funded: int = 0, credit_limit: int = 0, owner_id: str = "") -> int:
    """A customer wallet, opened with `funded` through ledger.commit_posting() as a top-up."""
    wallet_id = sql(
        stack,
        "INSERT INTO ledger.wallets (owner_id, asset_code, credit_limit) VALUES (:o, :a, :c) RETURNING id",
        o=owner_id or key("owner"),
        a=asset,
        c=credit_limit,
    )[0][0]
    if funded:
        post_topup(functools.partial(sql, stack), asset, wallet_id, system_account(stack, asset, "funding"), funded)
    return wallet_id


def post_topup(run: Any, asset: str, wallet_id: int, funding: int, amount: int, prefix: str = "setup") -> None:
    """A top-up straight through ledger.commit_posting, with `run` (a connection's run,
    or sql bound to a stack)."""
    run(
        "SELECT ledger.commit_posting(:k, 'setup', 'topup', :a, :amt, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]), :k)",  # the key as the payment's reference: each posts once
        k=key(prefix),
        a=asset,
        amt=amount,
        w=wallet_id,
        legs=[funding, wallet_id],
        amts=[-amount, amount],
    )


def balance(stack: Stack, wallet_id: int) -> int:
    return sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=wallet_id)[0][0]


def postings_with_key(stack: Stack, idempotency_key: str, tenant: str | None = None) -> int:
    """Postings under a key, in one tenant or (None) in any."""
    return sql(
        stack,
        "SELECT count(*) FROM ledger.transactions WHERE idempotency_key = :k"
        " AND (CAST(:t AS text) IS NULL OR tenant = CAST(:t AS text))",
        k=idempotency_key,
        t=tenant,
    )[0][0]


def transaction_count(stack: Stack) -> int:
    return sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0]


def invariant_violations(stack: Stack, since_transaction_id: int = 0) -> dict[str, list]:
    con = owner(stack)
    try:
        return find_violations(lambda statement: con.run(statement), since_transaction_id)
    finally:
        con.close()


def last_transaction_id(stack: Stack) -> int:
    return sql(stack, "SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0]


def assert_invariants(stack: Stack, since_transaction_id: int = 0) -> None:
    """Every invariant; each transaction's own checks (its legs against its rule) only
    after `since_transaction_id`, those before having been checked already."""
    violations = invariant_violations(stack, since_transaction_id)
    assert not violations, json.dumps(violations, default=str)


_sessions = threading.local()
HTTP_TESTER = "tester"  # the principal end-to-end tests call as, unless they name another
_tokens: dict[tuple[int, str], str] = {}


def principal(
    stack: Stack,
    principal_id: str,
    role: str,
    boundary: str = "all",
    root_wallet_id: int | None = None,
    tenant: str | None = None,
    owner_id: str | None = None,
    kind: str = "service",
) -> str:
    """Register a principal trusted from the stack's local issuer (once) and return a
    bearer token for it."""
    from emulators.database import owner_connection, register_principal

    con = owner_connection(stack.owner_dsn())
    try:
        if role == "tester":  # every scope: the tests' own role, never a deployment's
            con.run(
                "INSERT INTO ledger.roles (name, scopes, rate_limits, description) VALUES ('tester',"
                " CAST(:s AS text[]), CAST(:limits AS jsonb), 'end-to-end tests') ON CONFLICT DO NOTHING",
                limits=json.dumps({c: {"per_second": 100_000, "burst": 100_000} for c in ("money", "read", "admin")}),
                s=list(SCOPES),
            )
        register_principal(
            con, principal_id, stack.issuer, kind, tenant or principal_id, owner_id, [(role, boundary, root_wallet_id)]
        )
    finally:
        con.close()
    return bearer(stack, principal_id)


def bearer(stack: Stack, subject: str) -> str:
    token = _tokens.get((stack.port_base, subject))
    if token is None:
        token = _tokens[(stack.port_base, subject)] = stack.token(subject, lifetime_s=6 * 3600)
    return token


def http(
    stack: Stack,
    function: str,
    body: Any = None,
    idempotency_key: str | None = None,
    method: str = "POST",
    path: str = "/",
    raw: bytes | None = None,
    timeout: float = 30,
    token: str | None = None,
    content_type: str = "application/json",
) -> requests.Response:
    """Call a function of the running stack over HTTP (one keep-alive session per thread)
    as the tests' own principal, or with `token` ("" sends no Authorization header), the
    body as `content_type` ("" sends no Content-Type header)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    headers = {"Content-Type": content_type} if content_type else {}
    if token is None:
        token = _tokens.get((stack.port_base, HTTP_TESTER)) or principal(stack, HTTP_TESTER, "tester")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    return session.request(method, stack.function_url(function) + path, data=data, headers=headers, timeout=timeout)


HTTP_OPERATOR = "tester-operator"  # the same role, of kind operator: the operators' API needs one


@functools.cache
def _access_operations() -> frozenset[str]:
    """The operationIds of docs/openapi.json that the operators' API (functions/access) serves."""
    document = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text())
    return frozenset(
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in ("get", "post", "patch", "put", "delete") and operation["tags"] == ["access"]
    )


def headers_for(stack: Stack, operation: str) -> dict[str, str]:
    """The headers that let a test call `operation` (an operationId of docs/openapi.json):
    the one place where a test's HTTP calls get their credentials. The tests' own
    principal (role tester: every scope over every wallet, limits no test reaches); for
    the operators' API, an operator of that role (deciding a pending change takes a
    principal of kind operator)."""
    subject, kind = (HTTP_OPERATOR, "operator") if operation in _access_operations() else (HTTP_TESTER, "service")
    token = _tokens.get((stack.port_base, subject)) or principal(stack, subject, "tester", kind=kind)
    return {"Authorization": f"Bearer {token}"}


def login_pool(stack: Stack, user: str, password: str) -> Any:
    """Connections to the stack's ledger as one of the functions' own logins."""
    from common.adapters.postgres import Pool

    def connect() -> pg8000.native.Connection:
        return pg8000.native.Connection(
            host="127.0.0.1",
            port=stack.ports["postgres"],
            database="ledger",
            user=user,
            password=password,
            startup_params={"search_path": "ledger"},
        )

    return Pool(connect, size=4, max_age_s=300)


def exporter_pool(stack: Stack) -> Any:
    """Connections as the ERP export's own database role (erp_exporter), which the
    functions' role is not: only the scheduled export moves the export's state."""
    return login_pool(stack, *stack.login("exporter"))


def access_pool(stack: Stack) -> Any:
    """Connections as the operators' access function's own database role (ledger_access):
    principals, grants and pending changes change through its procedures alone."""
    return login_pool(stack, *stack.login("access_admin"))


def login_connection(stack: Stack, login: str) -> pg8000.native.Connection:
    """One connection as a login of emulators/logins.py LOGINS (a function's kind, the
    operator's, the in-process service's), with the stack's password for it."""
    user, password = stack.login(login)
    return pg8000.native.Connection(
        user, host="127.0.0.1", port=stack.ports["postgres"], database="ledger", password=password
    )


def ledger_service(ledger: Any = None, idempotency: Any = None, locks: Any = None, committed: Any = None) -> Any:
    """The service as bootstrap builds it (without the event relay), with some of its
    collaborators swapped for a test's own."""
    from common import bootstrap
    from common.service import LedgerService

    extra = () if committed is None else (committed,)
    return LedgerService(
        ledger or bootstrap.ledger(),
        bootstrap.ledger_admin(),
        bootstrap.ledger_queries(),
        idempotency or bootstrap.idempotency,
        locks or bootstrap.locks,
        *extra,
        access=bootstrap.access_store(),
    )


def pull_subscription(stack: Stack, topic: str, prefix: str) -> str:
    """A pull subscription of the test's own on `topic` (delete it with stack.delete_subscription)."""
    from emulators.stack import PROJECT

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    requests.put(stack.pubsub_url(f"subscriptions/{name}"), json={"topic": f"projects/{PROJECT}/topics/{topic}"})
    return name


def pull_messages(stack: Stack, subscription: str) -> list[dict[str, Any]]:
    """Whatever the subscription holds now, acknowledged, each message's JSON data decoded."""
    import base64

    pulled = requests.post(
        stack.pubsub_url(f"subscriptions/{subscription}:pull"), json={"maxMessages": 1000, "returnImmediately": True}
    ).json()
    messages = pulled.get("receivedMessages", [])
    if messages:
        requests.post(
            stack.pubsub_url(f"subscriptions/{subscription}:acknowledge"),
            json={"ackIds": [m["ackId"] for m in messages]},
        )
    return [json.loads(base64.b64decode(m["message"]["data"])) for m in messages]
