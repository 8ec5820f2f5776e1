"""History cursors are opaque and bound to their query, and a money function reads only
a JSON body sent to its own path (issue 14, "Bad input that still gets a 500"): each
refusal is a 4xx that writes nothing."""

from __future__ import annotations

import base64

import pytest

from tests.support import balance, http, key, new_wallet, postings_with_key, principal


def history(stack, wallet, query="", token=None):
    return http(stack, "wallets", method="GET", path=f"/wallets/{wallet}/history?{query}", token=token)


def page(stack, wallet, query="", token=None):
    response = history(stack, wallet, query, token)
    assert response.status_code == 200, response.text
    return response.json()


def refused_cursor(response):
    return response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"


def wallet_with_entries(stack, count=5):
    """A wallet with `count` top-ups (and so `count` entries), as the tests' own principal."""
    wallet = new_wallet(stack)
    for amount in range(1, count + 1):
        body = {"wallet_id": wallet, "asset": "TST", "amount": amount, "external_ref": key("ref")}
        assert http(stack, "topup", body, key()).status_code == 201
    return wallet


def test_paging_with_the_cursors_given_walks_every_entry_once(stack):
    wallet = wallet_with_entries(stack)
    first = page(stack, wallet, "limit=2")
    second = page(stack, wallet, f"limit=2&cursor={first['next_cursor']}")
    third = page(stack, wallet, f"limit=2&cursor={second['next_cursor']}")
    amounts = [item["amount"] for p in (first, second, third) for item in p["items"]]
    assert amounts == [5, 4, 3, 2, 1] and third["next_cursor"] is None
    # the page size may change from page to page; the query may not
    assert [item["amount"] for item in page(stack, wallet, f"limit=50&cursor={first['next_cursor']}")["items"]] == [
        3,
        2,
        1,
    ]


def test_a_cursor_of_another_wallet_is_refused(stack):
    mine, other = wallet_with_entries(stack, 3), wallet_with_entries(stack, 3)
    cursor = page(stack, other, "limit=1")["next_cursor"]
    assert refused_cursor(history(stack, mine, f"limit=1&cursor={cursor}"))


@pytest.mark.parametrize(
    ("first_query", "next_query"),
    [
        ("action=topup", ""),
        ("", "action=topup"),
        ("action=topup", "action=usage"),
        ("from=2020-01-01T00:00:00Z", "from=2020-01-02T00:00:00Z"),
        ("to=2099-01-01T00:00:00Z", ""),
    ],
)
def test_a_cursor_taken_to_other_filters_is_refused(stack, first_query, next_query):
    wallet = wallet_with_entries(stack, 3)
    cursor = page(stack, wallet, f"limit=1&{first_query}")["next_cursor"]
    assert cursor is not None
    assert refused_cursor(history(stack, wallet, f"limit=1&{next_query}&cursor={cursor}"))
    # the same filters, the same instant written in another zone: the next page
    if first_query.startswith("from="):
        same = first_query.replace("00:00:00Z", "07:00:00%2B07:00")
        assert page(stack, wallet, f"limit=1&{same}&cursor={cursor}")["items"]


def test_a_cursor_of_another_tenant_is_refused(stack):
    wallet = wallet_with_entries(stack, 3)
    cursor = page(stack, wallet, "limit=1")["next_cursor"]
    other_tenant = principal(stack, key("reader"), "tester", tenant=key("tenant"))
    assert refused_cursor(history(stack, wallet, f"limit=1&cursor={cursor}", other_tenant))
    assert page(stack, wallet, "limit=1", other_tenant)["next_cursor"] != cursor


def flip(cursor, index):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return cursor[:index] + alphabet[(alphabet.index(cursor[index]) + 1) % 64] + cursor[index + 1 :]


@pytest.mark.parametrize(
    "cursor",
    [
        "ZTI5",  # an unsigned cursor of the kind this API gave before
        base64.urlsafe_b64encode(b"e99999999999999999999").decode().rstrip("="),  # was amount_out_of_range
        base64.urlsafe_b64encode(b"e1").decode().rstrip("="),
        "%C2%B2",
        "%00",
        "tampered",
    ],
)
def test_a_forged_tampered_or_malformed_cursor_is_a_400(stack, cursor):
    wallet = wallet_with_entries(stack, 3)
    if cursor == "tampered":
        genuine = page(stack, wallet, "limit=1")["next_cursor"]
        cursor = flip(genuine, 3)
    assert refused_cursor(history(stack, wallet, f"limit=1&cursor={cursor}"))


# Money functions: JSON, on their own path -------------------------------------------


def topup_fields() -> dict:
    """A top-up's fields, with a payment reference of its own: a reference posts once."""
    return {"asset": "TST", "amount": 10, "external_ref": key("pay")}


@pytest.mark.parametrize(
    "content_type", ["", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
@pytest.mark.parametrize("function", ["topup", "usage"])
def test_a_money_action_not_sent_as_json_is_a_415_and_writes_nothing(stack, function, content_type):
    wallet, k = new_wallet(stack, funded=100), key()
    body = {"wallet_id": wallet, **topup_fields()}
    if function == "usage":
        body = {"wallet_id": wallet, "asset": "TST", "amount": 10, "usage_id": key("u"), "product": "p"}
    response = http(stack, function, body, k, content_type=content_type)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 100


@pytest.mark.parametrize(
    ("method", "path", "body"), [("POST", "/", {}), ("PATCH", "/wallets/{}", {"status": "frozen"})]
)
def test_wallet_admin_takes_json_only_too(stack, method, path, body):
    wallet = new_wallet(stack)
    body = body or {"owner_id": key("o"), "asset": "TST"}
    response = http(stack, "wallets", body, method=method, path=path.format(wallet), content_type="text/plain")
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("path", ["/topup", "/topup/"])
def test_a_money_action_answers_on_its_own_path(stack, path):
    wallet = new_wallet(stack)
    response = http(stack, "topup", {"wallet_id": wallet, **topup_fields()}, key(), path=path)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/usage", "/wallets/1", "/topup/extra", "/anything"])
def test_a_money_action_on_another_path_is_a_404_and_writes_nothing(stack, path):
    wallet, k = new_wallet(stack), key()
    response = http(stack, "topup", {"wallet_id": wallet, **topup_fields()}, k, path=path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "route_not_found"
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 0
