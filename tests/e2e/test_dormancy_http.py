"""Dormant processing end to end: the dormancy function through its Cloud Scheduler
topic and push subscription, a dormant wallet's refusal over HTTP (422
wallet_dormant), and a top-up that reactivates it with what was swept."""

from common.config import get_settings
from emulators.stack import wait_for
from tests.e2e.test_wallet_models_http import create, get, ok, post
from tests.support import ensure_asset, http, key, sql

ASSET = "DRME2E"


def test_the_dormancy_tick_sweeps_an_idle_wallet_and_a_top_up_brings_it_back(stack):
    ensure_asset(stack, ASSET)
    sql(
        stack,
        "INSERT INTO ledger.dormancy_policies (asset_code, model, inactivity, warning, action, reactivation)"
        " VALUES (:a, 'personal', interval '365 days', interval '30 days', 'sweep', 'automatic')"
        " ON CONFLICT DO NOTHING",
        a=ASSET,
    )
    wallet = create(stack, owner_id=key("idle"), asset=ASSET)
    post(stack, "topup", {"wallet_id": wallet, "asset": ASSET, "amount": 80, "external_ref": key("pay")})
    sql(stack, "UPDATE ledger.wallets SET last_activity_at = now() - interval '400 days' WHERE id = :w", w=wallet)

    stack.publish(get_settings().dormancy_tick_topic)
    stack.publish(get_settings().dormancy_tick_topic)  # delivered twice: swept once
    wait_for(lambda: get(stack, f"/wallets/{wallet}")["wallet"]["status"] == "dormant", "the dormancy job", 60)
    assert get(stack, f"/wallets/{wallet}")["wallet"]["balance"] == 0

    refused = http(
        stack,
        "usage",
        {"wallet_id": wallet, "asset": ASSET, "amount": 1, "usage_id": key("u"), "product": "gpu"},
        key(),
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "wallet_dormant"

    post(stack, "topup", {"wallet_id": wallet, "asset": ASSET, "amount": 5, "external_ref": key("pay")})
    shown = ok(http(stack, "wallets", method="GET", path=f"/wallets/{wallet}"), 200)["wallet"]
    assert (shown["status"], shown["balance"]) == ("active", 85)
    sweeps = sql(
        stack, "SELECT count(*) FROM ledger.transactions WHERE wallet_id = :w AND action = 'dormant_sweep'", w=wallet
    )
    assert sweeps == [[1]]
