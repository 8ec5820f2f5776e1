"""Every action end to end: HTTP into the functions, real Firestore, Redis and Postgres."""

from concurrent.futures import ThreadPoolExecutor

from tests.support import balance, http, key, new_wallet, postings_with_key


def test_every_action_over_http(stack):
    created = http(stack, "wallets", {"owner_id": "e2e-alice", "asset": "TST"})
    assert created.status_code == 201
    alice = created.json()["wallet"]["id"]
    bob = new_wallet(stack)
    steps = [
        ("topup", {"wallet_id": alice, "asset": "TST", "amount": 1000, "external_ref": key("pay_1")}),
        ("bonus", {"wallet_id": alice, "asset": "TST", "amount": 100, "campaign": "welcome"}),
        ("usage", {"wallet_id": alice, "asset": "TST", "amount": 250, "usage_id": key("u-1"), "product": "gpu"}),
        ("transfer", {"from_wallet_id": alice, "to_wallet_id": bob, "asset": "TST", "amount": 50}),
    ]
    ids = []
    for function, body in steps:
        response = http(stack, function, body, key())
        assert response.status_code == 201, response.text
        ids.append(response.json()["transaction"]["id"])
    voided = http(stack, "void", {"transaction_id": ids[2], "reason": "refund"}, key())
    assert voided.status_code == 201 and voided.json()["transaction"]["voids_transaction_id"] == ids[2]

    wallet = http(stack, "wallets", method="GET", path=f"/wallets/{alice}").json()["wallet"]
    assert wallet["balance"] == 1000 + 100 - 250 - 50 + 250 == balance(stack, alice)
    history = http(stack, "wallets", method="GET", path=f"/wallets/{alice}/history?limit=10").json()
    assert [item["action"] for item in history["items"]] == ["void", "transfer", "usage", "bonus", "topup"]
    usage_only = http(stack, "wallets", method="GET", path=f"/{alice}/history?action=usage").json()
    assert [item["transaction_id"] for item in usage_only["items"]] == [ids[2]]
    transaction = http(stack, "wallets", method="GET", path=f"/transactions/{ids[2]}").json()["transaction"]
    assert transaction["voided_by"] == voided.json()["transaction"]["id"]


def test_a_replay_returns_the_same_status_and_body_and_posts_nothing(stack):
    wallet, k = new_wallet(stack), key()
    body = {"wallet_id": wallet, "asset": "TST", "amount": 10, "external_ref": key("pay")}
    first, second = http(stack, "topup", body, k), http(stack, "topup", body, k)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.content == second.content
    assert "Idempotent-Replayed" not in first.headers and second.headers["Idempotent-Replayed"] == "true"
    reused = http(stack, "topup", {**body, "amount": 11}, k)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 10


def test_twenty_concurrent_copies_post_once_and_answer_alike(stack):
    wallet, k = new_wallet(stack, funded=1000), key()
    body = {"wallet_id": wallet, "asset": "TST", "amount": 7, "usage_id": key("u-dup"), "product": "p"}
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: http(stack, "usage", body, k), range(20)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 993


def test_errors_have_one_shape(stack):
    wallet = new_wallet(stack, funded=5)
    cases = [
        (
            "usage",
            {"wallet_id": wallet, "asset": "TST", "amount": 6, "usage_id": key("u"), "product": "p"},
            422,
            "insufficient_funds",
        ),
        ("topup", {"wallet_id": 2**62, "asset": "TST", "amount": 1, "external_ref": key("r")}, 404, "wallet_not_found"),
        (
            "transfer",
            {"from_wallet_id": wallet, "to_wallet_id": wallet, "asset": "TST", "amount": 1},
            422,
            "same_wallet",
        ),
        ("void", {"transaction_id": 2**62}, 404, "transaction_not_found"),
    ]
    for function, body, status, code in cases:
        response = http(stack, function, body, key())
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["message"] and "details" in error
    assert http(stack, "wallets", method="GET", path="/wallets/999999999").status_code == 404
    assert http(stack, "topup", method="GET").status_code == 405
    assert balance(stack, wallet) == 5
