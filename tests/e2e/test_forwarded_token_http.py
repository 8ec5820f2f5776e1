"""Through API Gateway (infra/terraform/gateway.tf) a function receives the gateway's own
token in Authorization, its signature removed by Cloud Run, and the end user's in
X-Forwarded-Authorization: the forwarded token decides, verified in full; without it,
Authorization decides as it always has."""

from __future__ import annotations

import requests

from tests.support import ensure_asset, new_wallet, principal

SUBJECT = "t-forwarded-payments"
TENANT = "t-forwarded-payments"


def get_wallet(stack, wallet: int, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{stack.function_url('wallets')}/wallets/{wallet}", headers=headers, timeout=30)


def test_a_forwarded_token_is_the_caller_and_a_bad_one_is_401(stack):
    ensure_asset(stack)
    token = principal(stack, SUBJECT, "payment_service", "all", tenant=TENANT)
    wallet = new_wallet(stack, funded=10)
    stripped = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnYXRld2F5In0.SIGNATURE_REMOVED_BY_GOOGLE"

    accepted = get_wallet(stack, wallet, {"Authorization": stripped, "X-Forwarded-Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["wallet"]["id"] == wallet

    refused = get_wallet(stack, wallet, {"Authorization": f"Bearer {token}", "X-Forwarded-Authorization": stripped})
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthenticated"

    # services calling the function directly: both headers Cloud Run and the function read
    direct = get_wallet(
        stack, wallet, {"Authorization": f"Bearer {token}", "X-Serverless-Authorization": f"Bearer {token}"}
    )
    assert direct.status_code == 200, direct.text
