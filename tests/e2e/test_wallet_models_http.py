"""The wallet models end to end: HTTP into the functions (as the curl examples of
docs/wallet-models.md do), the lot expiry job through its Cloud Scheduler topic and
push subscription, and the ERP lines of reseller usage, wholesale discounts and
breakage."""

from datetime import UTC, datetime, timedelta

from common.config import get_settings
from emulators.stack import wait_for
from tests.e2e.test_erp_export import Books, settled
from tests.support import http, key, sql


def ok(response, status=201):
    assert response.status_code == status, response.text
    return response.json()


def post(stack, function, body):
    return ok(http(stack, function, body, key()))["transaction"]


def get(stack, path):
    return ok(http(stack, "wallets", method="GET", path=path), 200)


def create(stack, **body):
    return ok(http(stack, "wallets", {"asset": "TST", **body}))["wallet"]["id"]


def in_days(days):
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_enterprise_over_http(stack):
    pool = create(stack, owner_id="acme", model="enterprise", spend_mode="allocated")
    division = create(stack, owner_id="acme-research", model="enterprise", parent_id=pool)
    team = create(stack, owner_id="acme-research-ml", model="enterprise", parent_id=division)
    post(stack, "topup", {"wallet_id": pool, "asset": "TST", "amount": 100_000, "external_ref": key("inv-1")})
    post(stack, "allocate", {"wallet_id": division, "asset": "TST", "amount": 40_000})
    post(stack, "allocate", {"wallet_id": team, "asset": "TST", "amount": 10_000})
    ok(http(stack, "wallets", {"spend_limits": {"month": 3_000}}, method="PATCH", path=f"/wallets/{team}"), 200)
    post(
        stack, "usage", {"wallet_id": team, "asset": "TST", "amount": 2_500, "usage_id": key("job-1"), "product": "gpu"}
    )
    refused = http(
        stack,
        "usage",
        {"wallet_id": team, "asset": "TST", "amount": 600, "usage_id": key("j"), "product": "gpu"},
        key(),
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "spend_limit_exceeded"
    post(stack, "reclaim", {"wallet_id": team, "asset": "TST", "amount": 500})

    rollup = get(stack, f"/wallets/{pool}/rollup")
    assert (rollup["balance"], rollup["rollup_balance"], rollup["members"]) == (60_000, 97_500, 2)
    assert rollup["children"] == [
        {
            "wallet_id": division,
            "owner_id": "acme-research",
            "balance": 30_500,
            "rollup_balance": 37_500,
            "rollup_expiring": 0,
            "members": 1,
        }
    ]
    members = get(stack, f"/wallets/{pool}/members?limit=1")
    assert [m["id"] for m in members["members"]] == [division] and members["next_after"] == division
    rest = get(stack, f"/wallets/{pool}/members?after={division}")
    assert [m["id"] for m in rest["members"]] == [team] and rest["next_after"] is None
    wallet = get(stack, f"/wallets/{team}")["wallet"]
    assert wallet["spend_limits"]["month"]["spent"] == 2_500 and wallet["balance"] == 7_000


def test_tree_and_lot_requests_that_are_wrong_get_a_4xx_and_write_nothing(stack):
    pool = create(stack, owner_id="acme", model="enterprise")
    before = sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0]
    cases = [
        ("wallets", {"owner_id": "x", "asset": "TST", "model": "personal", "parent_id": pool}, 400),
        (
            "wallets",
            {"owner_id": "x", "asset": "TST", "model": "enterprise", "parent_id": pool, "credit_limit": 5},
            400,
        ),
        ("allocate", {"wallet_id": pool, "asset": "TST", "amount": 1}, 422),  # a root has no parent
        ("allocate", {"wallet_id": pool, "asset": "TST", "amount": -1}, 400),
        (
            "topup",
            {"wallet_id": pool, "asset": "TST", "amount": 5, "external_ref": key("r"), "expires_at": "2099-01-01"},
            400,
        ),
        ("topup", {"wallet_id": pool, "asset": "TST", "amount": 5, "external_ref": key("r"), "price": 6}, 400),
        ("addon", {"wallet_id": pool, "asset": "TST", "amount": 5}, 400),  # no external_ref
    ]
    for function, body, status in cases:
        response = http(stack, function, body, key())
        assert response.status_code == status, (function, body, response.text)
        assert "error" in response.json()
    patch = http(stack, "wallets", {"spend_limits": {"year": 5}}, method="PATCH", path=f"/wallets/{pool}")
    assert patch.status_code == 400
    extend = http(stack, "wallets", {"expires_at": in_days(3)}, key(), path="/lots/999999999/extend")
    assert extend.status_code == 404 and extend.json()["error"]["code"] == "lot_not_found"
    assert http(stack, "wallets", method="GET", path=f"/wallets/{pool}/members?limit=x").status_code == 400
    assert sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0] == before


def test_lots_over_http_and_the_expiry_job_through_its_tick(stack):
    wallet = create(stack, owner_id="lotty")
    post(stack, "topup", {"wallet_id": wallet, "asset": "TST", "amount": 100, "external_ref": key("p")})
    post(
        stack,
        "addon",
        {
            "wallet_id": wallet,
            "asset": "TST",
            "amount": 50,
            "external_ref": key("p2"),
            "plan": "pro",
            "expires_at": in_days(1),
        },
    )
    post(stack, "bonus", {"wallet_id": wallet, "asset": "TST", "amount": 20, "expires_at": in_days(2)})
    breakdown = get(stack, f"/wallets/{wallet}/lots")
    assert (breakdown["balance"], breakdown["expiring"], breakdown["no_expiry"]) == (170, 70, 100)
    addon_lot, bonus_lot = breakdown["lots"]
    extended = ok(
        http(stack, "wallets", {"expires_at": in_days(9)}, key(), path=f"/lots/{bonus_lot['id']}/extend"), 200
    )
    assert extended["lot"]["expires_at"].startswith(in_days(9)[:10])
    sql(stack, "UPDATE ledger.lots SET expires_at = now() - interval '1 second' WHERE id = :l", l=addon_lot["id"])
    assert get(stack, f"/wallets/{wallet}")["wallet"]["available"] == 120  # before the job has run

    stack.publish(get_settings().lot_expiry_tick_topic)
    stack.publish(get_settings().lot_expiry_tick_topic)  # delivered twice: expires once
    wait_for(lambda: get(stack, f"/wallets/{wallet}")["wallet"]["balance"] == 120, "the expiry job", 60)
    expiries = sql(stack, "SELECT amount FROM ledger.transactions WHERE wallet_id = :w AND action = 'expiry'", w=wallet)
    assert expiries == [[50]]
    assert [lot["id"] for lot in get(stack, f"/wallets/{wallet}/lots")["lots"]] == [bonus_lot["id"]]
    assert len(get(stack, f"/wallets/{wallet}/lots?all=true")["lots"]) == 2


def test_reseller_usage_wholesale_discount_and_breakage_reach_the_erp_attributed(stack):
    books = Books(stack)
    reseller = create(stack, owner_id="reseller-7", model="reseller")
    customer = create(stack, owner_id="end-customer-3", model="reseller", parent_id=reseller)
    bought = post(
        stack, "topup", {"wallet_id": reseller, "asset": "TST", "amount": 1_000, "external_ref": key("w"), "price": 700}
    )
    post(stack, "allocate", {"wallet_id": customer, "asset": "TST", "amount": 300})
    usage_id = key("job-42")
    used = post(
        stack,
        "usage",
        {"wallet_id": customer, "asset": "TST", "amount": 120, "usage_id": usage_id, "product": "llm"},
    )
    post(stack, "bonus", {"wallet_id": customer, "asset": "TST", "amount": 30, "expires_at": in_days(1)})
    sql(stack, "UPDATE ledger.lots SET expires_at = now() - interval '1 second' WHERE wallet_id = :w", w=customer)
    stack.publish(get_settings().lot_expiry_tick_topic)
    wait_for(
        lambda: (
            sql(
                stack, "SELECT count(*) FROM ledger.transactions WHERE wallet_id = :w AND action = 'expiry'", w=customer
            )[0][0]
            == 1
        ),
        "the expiry job",
        60,
    )
    expired = sql(stack, "SELECT id FROM ledger.transactions WHERE wallet_id = :w AND action = 'expiry'", w=customer)[
        0
    ][0]
    settled(stack, [bought["id"], used["id"], expired])
    while not books.exporter(batch_events=100).run_pass().caught_up:
        pass

    event = sql(stack, "SELECT event FROM ledger.outbox_events WHERE transaction_id = :t", t=used["id"])[0][0]
    assert (event["customer_id"], event["reseller_id"], event["root_wallet_id"]) == (
        "end-customer-3",
        "reseller-7",
        reseller,
    )
    usage_lines = books.lines_of(used["id"])
    assert {(line["account"], line["debit"], line["credit"]) for line in usage_lines} == {
        ("2320", 120, 0),
        ("4000", 0, 120),
    }
    for line in usage_lines:
        assert (line["event_type"], line["reseller_id"], line["customer_id"], line["usage_id"]) == (
            "revenue",
            "reseller-7",
            "end-customer-3",
            usage_id,
        )
    wholesale = {(line["account"], line["debit"], line["credit"]) for line in books.lines_of(bought["id"])}
    assert wholesale == {("1100", 700, 0), ("4900", 300, 0), ("2320", 0, 1_000)}
    breakage = books.lines_of(expired)
    assert {(line["account"], line["debit"], line["credit"]) for line in breakage} == {("2320", 30, 0), ("4100", 0, 30)}
    assert {line["event_type"] for line in breakage} == {"breakage_revenue"}
    assert {line["reseller_id"] for line in breakage} == {"reseller-7"}
