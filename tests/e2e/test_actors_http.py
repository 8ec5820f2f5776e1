"""Postings record who made them (issue 13, "Audit"): the principal, its issuer, the
role of the grant that allowed it, its tenant and the request id, in the answer, in
GET /transactions/{id}, and in the ledger event the outbox publishes. The request id
is the server's (Google's trace id, else a new one), never the caller's, and the
response's X-Request-Id header names it; the caller's own X-Request-Id, when it sent a
usable one, is kept beside it as client_request_id."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.support import ensure_asset, http, key, new_wallet, principal, sql


@pytest.fixture(scope="module")
def callers(stack):
    ensure_asset(stack)
    owner = "a-alice"
    root = new_wallet(stack, funded=10_000)
    return {
        "payments": principal(stack, "a-payments", "payment_service", "all", tenant="a-payments"),
        "backoffice": principal(stack, "a-backoffice", "back_office", "all", tenant="a-backoffice"),
        "customer": principal(stack, owner, "customer", "own", tenant="a-alice", owner_id=owner, kind="user"),
        "wallets": (root, new_wallet(stack, funded=500, owner_id=owner), new_wallet(stack, owner_id=owner)),
    }


def post(stack, function, body, token, request_id=None):
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key("a"), "Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    return requests.post(stack.function_url(function), json=body, headers=headers, timeout=30)


def expected_actor(stack, principal_id, role, tenant, request_id, client_request_id=None):
    actor = {
        "principal": principal_id,
        "issuer": stack.issuer,
        "role": role,
        "tenant": tenant,
        "request_id": request_id,
    }
    return actor if client_request_id is None else {**actor, "client_request_id": client_request_id}


def server_id(response):
    """The server's id for a request, as its answer names it: 32 hex digits."""
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0, request_id
    return request_id


def assert_recorded(stack, transaction, actor, reader_token):
    assert transaction["actor"] == actor
    read = http(stack, "wallets", method="GET", path=f"/transactions/{transaction['id']}", token=reader_token)
    assert read.status_code == 200 and read.json()["transaction"]["actor"] == actor, read.text
    event = sql(stack, "SELECT event FROM ledger.outbox_events WHERE transaction_id = :t", t=transaction["id"])[0][0]
    assert event["actor"] == actor
    stored = sql(stack, "SELECT tenant, actor FROM ledger.transactions WHERE id = :t", t=transaction["id"])[0]
    assert stored == [actor["tenant"], actor]


def test_a_top_up_records_its_actor_the_servers_request_id_and_the_callers_beside_it(stack, callers):
    wallet = callers["wallets"][0]
    given = f"a-webhook-{uuid.uuid4().hex}"
    body = {"wallet_id": wallet, "asset": "TST", "amount": 40, "external_ref": key("psp-1")}
    response = post(stack, "topup", body, callers["payments"], given)
    assert response.status_code == 201, response.text
    request_id = server_id(response)
    actor = expected_actor(stack, "a-payments", "payment_service", "a-payments", request_id, given)
    assert_recorded(stack, response.json()["transaction"], actor, callers["payments"])


def test_a_caller_cannot_name_its_request_with_anothers_id(stack, callers):
    """Two requests that send one X-Request-Id are two requests in the records."""
    wallet = callers["wallets"][0]
    given = f"a-reused-{uuid.uuid4().hex}"
    first, second = (
        post(
            stack,
            "topup",
            {"wallet_id": wallet, "asset": "TST", "amount": 2, "external_ref": key("psp-4")},
            callers["payments"],
            given,
        )
        for _ in range(2)
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    actors = [response.json()["transaction"]["actor"] for response in (first, second)]
    assert actors[0]["request_id"] != actors[1]["request_id"]
    assert [a["request_id"] for a in actors] == [server_id(first), server_id(second)]
    assert all(a["client_request_id"] == given for a in actors)


def test_a_trace_id_the_caller_sends_does_not_name_the_request(stack, callers):
    trace = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {callers['payments']}", "Idempotency-Key": key("a-trace")}
    headers["X-Cloud-Trace-Context"] = f"{trace}/1;o=1"
    body = {"wallet_id": callers["wallets"][0], "asset": "TST", "amount": 1, "external_ref": key("psp-5")}
    response = requests.post(stack.function_url("topup"), json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-Id"] != trace  # a client can force trace ids on Google's front end
    assert response.json()["transaction"]["actor"]["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 129, "a\u00e9"])
def test_without_a_usable_request_id_of_its_own_the_caller_gets_only_the_servers(stack, callers, given):
    wallet = callers["wallets"][0]
    body = {"wallet_id": wallet, "asset": "TST", "amount": 3, "external_ref": key("psp-2")}
    response = post(stack, "topup", body, callers["payments"], given)
    assert response.status_code == 201, response.text
    request_id = server_id(response)
    actor = expected_actor(stack, "a-payments", "payment_service", "a-payments", request_id)
    assert_recorded(stack, response.json()["transaction"], actor, callers["payments"])


def test_a_transfer_and_a_void_record_their_own_actors(stack, callers):
    _, source, target = callers["wallets"]
    transfer = post(
        stack,
        "transfer",
        {"from_wallet_id": source, "to_wallet_id": target, "asset": "TST", "amount": 25},
        callers["customer"],
        "a-transfer-1",
    )
    assert transfer.status_code == 201, transfer.text
    posted = transfer.json()["transaction"]
    transferred = expected_actor(stack, "a-alice", "customer", "a-alice", server_id(transfer), "a-transfer-1")
    assert_recorded(stack, posted, transferred, callers["customer"])

    void = post(
        stack, "void", {"transaction_id": posted["id"], "reason": "disputed"}, callers["backoffice"], "a-void-1"
    )
    assert void.status_code == 201, void.text
    actor = expected_actor(stack, "a-backoffice", "back_office", "a-backoffice", server_id(void), "a-void-1")
    assert_recorded(stack, void.json()["transaction"], actor, callers["backoffice"])
    # the voided posting keeps its own actor
    assert_recorded(stack, posted, transferred, callers["customer"])


def test_a_replay_answers_with_the_first_requests_actor(stack, callers):
    wallet = callers["wallets"][0]
    headers = {"Authorization": f"Bearer {callers['payments']}", "Idempotency-Key": key("a-replay")}
    body = {"wallet_id": wallet, "asset": "TST", "amount": 5, "external_ref": key("psp-3")}
    first = requests.post(
        stack.function_url("topup"), json=body, headers={**headers, "X-Request-Id": "a-first"}, timeout=30
    )
    again = requests.post(
        stack.function_url("topup"), json=body, headers={**headers, "X-Request-Id": "a-retry"}, timeout=30
    )
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert server_id(again) != server_id(first)  # this request's id
    actor = again.json()["transaction"]["actor"]  # the posting's, as first made
    assert (actor["request_id"], actor["client_request_id"]) == (server_id(first), "a-first")


def test_an_admin_change_is_audited_with_its_actor_and_request_id(stack, callers):
    ops = principal(stack, "a-ops", "operator", "all", tenant="a-ops", kind="operator")
    headers = {"Authorization": f"Bearer {ops}", "X-Request-Id": "a-create-1"}
    body = {"owner_id": "a-new-owner", "asset": "TST"}
    response = requests.post(stack.function_url("wallets") + "/wallets", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    wallet = response.json()["wallet"]["id"]
    rows = sql(stack, "SELECT actor, action FROM ledger.audit_log WHERE target = :t", t=f"wallet:{wallet}")
    expected = expected_actor(stack, "a-ops", "operator", "a-ops", server_id(response), "a-create-1")
    assert rows and all(actor == expected for actor, _ in rows)
