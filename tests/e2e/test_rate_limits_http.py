"""Rate limits over HTTP: a burst over a principal's limit gets 429s with Retry-After
and RateLimit-* headers, nothing is posted for them, and the budget comes back."""

import json
import time

from tests.support import http, key, new_wallet, principal, sql, transaction_count


def limited_caller(stack, name, money_per_second, burst):
    token = principal(stack, name, "payment_service")
    sql(
        stack,
        "UPDATE ledger.principals SET rate_limits = CAST(:l AS jsonb) WHERE id = :id",
        l=json.dumps({"money": {"per_second": money_per_second, "burst": burst}}),
        id=name,
    )
    time.sleep(1.2)  # the functions cache a principal for a second on the test stack
    return token


def top_up(stack, token, wallet):
    body = {"wallet_id": wallet, "asset": "TST", "amount": 1, "external_ref": key("rl")}
    return http(stack, "topup", body, idempotency_key=key("rl"), token=token)


def test_a_burst_over_the_limit_gets_429s_and_the_budget_comes_back(stack):
    token = limited_caller(stack, "rate-limited-psp", money_per_second=2, burst=3)
    wallet = new_wallet(stack)
    before = transaction_count(stack)
    answers = [top_up(stack, token, wallet) for _ in range(6)]
    statuses = [a.status_code for a in answers]
    assert statuses[:3] == [201, 201, 201] and 429 in statuses[3:], statuses
    posted = statuses.count(201)
    assert transaction_count(stack) == before + posted  # a 429 posts nothing

    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
    allowed = answers[0]
    assert allowed.headers["RateLimit-Limit"] == "3" and int(allowed.headers["RateLimit-Remaining"]) == 2

    time.sleep(int(refused.headers["Retry-After"]))
    assert top_up(stack, token, wallet).status_code == 201


def test_each_action_class_has_its_own_budget(stack):
    token = limited_caller(stack, "rate-limited-reader", money_per_second=1, burst=1)
    wallet = new_wallet(stack)
    assert top_up(stack, token, wallet).status_code == 201
    assert top_up(stack, token, wallet).status_code == 429
    # reads are another class: this caller's read budget is untouched
    read = http(stack, "wallets", method="GET", path=f"/wallets/{wallet}", token=token)
    assert read.status_code == 200 and read.headers["RateLimit-Limit"] != "1"
