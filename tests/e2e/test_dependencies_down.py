"""A dependency that is down: 503 with a clear code, nothing written; once it is back,
actions work again without restarting the functions."""

import time

import pytest

from tests.support import balance, http, key, new_wallet, postings_with_key, transaction_count


def eventually_ok(send, timeout=60):
    """Clients reconnect with backoff: retry (with fresh keys) until an action succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        response = send()
        if response.status_code == 201 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def usage_body(wallet):
    return {"wallet_id": wallet, "asset": "TST", "amount": 1, "usage_id": key("u"), "product": "p"}


@pytest.mark.parametrize(
    ("service", "function"),
    [("redis", "usage"), ("firestore", "topup"), ("firestore", "usage"), ("postgres", "transfer")],
)
def test_dependency_down_gives_503_and_writes_nothing(stack, service, function):
    wallet, other = new_wallet(stack, funded=100), new_wallet(stack)
    bodies = {
        "usage": usage_body(wallet),
        "topup": {"wallet_id": wallet, "asset": "TST", "amount": 5, "external_ref": key("r")},
        "transfer": {"from_wallet_id": wallet, "to_wallet_id": other, "asset": "TST", "amount": 5},
    }
    before = transaction_count(stack)
    stack.stop_service(service)
    try:
        k = key()
        response = http(stack, function, bodies[function], k)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "dependency_unavailable" and error["details"]["service"] == service
        assert "Traceback" not in response.text
    finally:
        stack.start_service(service)
    assert postings_with_key(stack, k) == 0
    assert transaction_count(stack) == before and balance(stack, wallet) == 100

    # a probe of its own: the same business id under a new key would answer for the retry below
    probe = {
        **bodies[function],
        **{name: key(name) for name in ("usage_id", "external_ref") if name in bodies[function]},
    }
    recovered = eventually_ok(lambda: http(stack, function, probe, key()))
    assert recovered.status_code == 201, recovered.text
    # the key that met the outage was released, so retrying it now posts exactly once
    assert http(stack, function, bodies[function], k).status_code == 201
    assert postings_with_key(stack, k) == 1
