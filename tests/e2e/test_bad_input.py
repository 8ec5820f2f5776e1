"""Bad input gets a clear 400 and writes nothing: no posting, no balance change, and no
idempotency record left behind."""

import pytest

from common import bootstrap
from common.config import get_settings
from common.idempotency import record_id
from tests.support import HTTP_TESTER, balance, ensure_asset, http, key, new_wallet, postings_with_key

MAX = 2**63 - 1


def idempotency_record_exists(k):
    collection = bootstrap.firestore_client().collection(get_settings().idempotency_collection)
    # under the tenant of the tests' own principal, as the functions claim it
    return collection.document(record_id(HTTP_TESTER, k)).get().exists


def topup(wallet, **change):
    return {"wallet_id": wallet, "asset": "TST", "amount": 10, "external_ref": key("pay"), **change}


BAD_AMOUNTS = {
    "float": 10.5,
    "integral float": 10.0,
    "exponent": "1e3",
    "string": "10",
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -10,
    "beyond int64": MAX + 1,
    "null": None,
    "list": [10],
    "object": {"units": 10},
}


@pytest.mark.parametrize("function", ["topup", "bonus", "usage", "transfer", "addon", "allocate", "reclaim"])
@pytest.mark.parametrize("name", list(BAD_AMOUNTS))
def test_bad_amounts_are_refused_with_400(stack, function, name):
    wallet, other = new_wallet(stack, funded=100), new_wallet(stack)
    bodies = {
        "topup": topup(wallet),
        "bonus": {"wallet_id": wallet, "asset": "TST", "amount": 10},
        "usage": {"wallet_id": wallet, "asset": "TST", "amount": 10, "usage_id": key("u"), "product": "p"},
        "transfer": {"from_wallet_id": wallet, "to_wallet_id": other, "asset": "TST", "amount": 10},
        "addon": {**topup(wallet), "plan": "pro"},
        "allocate": {"wallet_id": other, "asset": "TST", "amount": 10},
        "reclaim": {"wallet_id": other, "asset": "TST", "amount": 10},
    }
    k = key()
    response = http(stack, function, {**bodies[function], "amount": BAD_AMOUNTS[name]}, k)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed" and error["details"][0]["field"] == "amount"
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 100 and balance(stack, other) == 0
    assert not idempotency_record_exists(k)


def test_the_exponent_float_written_as_a_json_number_is_refused(stack):
    wallet, k = new_wallet(stack), key()
    raw = b'{"wallet_id": %d, "asset": "TST", "amount": 1e3, "external_ref": "pay"}' % wallet
    response = http(stack, "topup", raw=raw, idempotency_key=k)
    assert response.status_code == 400 and postings_with_key(stack, k) == 0


@pytest.mark.parametrize("function", ["topup", "transfer"])
def test_totals_beyond_int64_are_refused_with_400_and_write_nothing(stack, function):
    asset = ensure_asset(stack, "OVF")  # its own asset: the treasury of TST stays far from the edge
    rich, other = new_wallet(stack, asset=asset, funded=MAX - 5), new_wallet(stack, asset=asset, funded=10)
    k = key()
    if function == "topup":
        response = http(stack, "topup", {"wallet_id": rich, "asset": asset, "amount": 10, "external_ref": key("r")}, k)
    else:
        body = {"from_wallet_id": other, "to_wallet_id": rich, "asset": asset, "amount": 10}
        response = http(stack, "transfer", body, k)
    assert response.status_code == 400 and response.json()["error"]["code"] == "amount_out_of_range"
    assert postings_with_key(stack, k) == 0
    assert (balance(stack, rich), balance(stack, other)) == (MAX - 5, 10)
    assert not idempotency_record_exists(k)


@pytest.mark.parametrize(
    ("case", "raw", "code"),
    [
        ("not json", b"{amount: 10", "invalid_json"),
        ("array", b"[1, 2]", "invalid_json"),
        ("empty", b"", "invalid_json"),
        ("string", b'"topup"', "invalid_json"),
    ],
)
def test_malformed_bodies_are_refused(stack, case, raw, code):
    k = key()
    response = http(stack, "topup", raw=raw, idempotency_key=k)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert postings_with_key(stack, k) == 0


@pytest.mark.parametrize("function", ["topup", "wallets"])
def test_a_body_over_64_kib_is_refused_with_413_before_it_is_parsed(stack, function):
    k = key()
    raw = b'{"pad": "' + b"x" * 70_000 + b'"}'
    response = http(stack, function, raw=raw, idempotency_key=k, path="/wallets" if function == "wallets" else "/")
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert postings_with_key(stack, k) == 0 and not idempotency_record_exists(k)


@pytest.mark.parametrize(
    "change",
    [
        {"wallet_id": "1"},
        {"wallet_id": 0},
        {"wallet_id": 1.0},
        {"asset": "tst"},
        {"asset": 5},
        {"external_ref": ""},
        {"unknown_field": 1},
        {"metadata": {"nested": {"too": "deep"}}},
    ],
)
def test_other_bad_fields_are_refused(stack, change):
    wallet, k = new_wallet(stack), key()
    response = http(stack, "topup", topup(wallet, **change), k)
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_failed"
    assert postings_with_key(stack, k) == 0 and balance(stack, wallet) == 0


def test_missing_fields_are_refused(stack):
    wallet = new_wallet(stack)
    for field in ("wallet_id", "asset", "amount", "external_ref"):
        body = topup(wallet)
        del body[field]
        response = http(stack, "topup", body, key())
        assert response.status_code == 400 and response.json()["error"]["details"][0]["field"] == field
    assert balance(stack, wallet) == 0


@pytest.mark.parametrize("header", [None, "", "x" * 256])
def test_a_missing_or_bad_idempotency_key_is_refused(stack, header):
    wallet = new_wallet(stack)
    response = http(stack, "topup", topup(wallet), header)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("idempotency_key_missing", "idempotency_key_invalid")
    assert balance(stack, wallet) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/wallets/abc",
        "/wallets/0",
        "/wallets/1/history?limit=0",
        "/wallets/1/history?cursor=%%%",
        "/wallets/1/history?from=yesterday",
    ],
)
def test_bad_reads_are_refused_with_400(stack, path):
    new_wallet(stack)
    response = http(stack, "wallets", method="GET", path=path)
    assert response.status_code == 400, response.text


def test_a_transfer_in_an_asset_that_does_not_exist_is_refused_not_a_500(stack):
    payer, payee, k = new_wallet(stack, funded=100), new_wallet(stack), key()
    body = {"from_wallet_id": payer, "to_wallet_id": payee, "asset": "NOPE", "amount": 10}
    response = http(stack, "transfer", body, k)
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_asset"
    assert postings_with_key(stack, k) == 0 and balance(stack, payer) == 100


@pytest.mark.parametrize("function", ["topup", "wallets"])
@pytest.mark.parametrize("path", ["/robots.txt", "/favicon.ico", "/wallets/lots/1%0A"])
def test_paths_the_framework_answers_itself_get_the_json_error_shape_too(stack, function, path):
    response = http(stack, function, method="GET", path=path)
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "route_not_found" and "Server-Timing" in response.headers
