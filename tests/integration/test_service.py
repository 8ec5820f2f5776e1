"""Every action through the service layer, against real Postgres, Redis and Firestore."""

import pytest

from common import bootstrap
from common.errors import NotFound, Refused
from common.ledger import commands
from tests.support import CALLER, balance, key, new_wallet, sql, system_account


@pytest.fixture
def service(stack):
    return bootstrap.service()


def test_top_up_bonus_usage_transfer_and_their_balances(stack, service):
    alice, bob = new_wallet(stack), new_wallet(stack)
    service.top_up(CALLER, commands.TopUp(wallet_id=alice, asset="TST", amount=1000, external_ref=key("pay-1")), key())
    service.bonus(CALLER, commands.Bonus(wallet_id=alice, asset="TST", amount=50, campaign="welcome"), key())
    usage_id = key("u-1")
    used = service.usage(
        CALLER, commands.Usage(wallet_id=alice, asset="TST", amount=300, usage_id=usage_id, product="gpu"), key()
    )
    service.transfer(CALLER, commands.Transfer(from_wallet_id=alice, to_wallet_id=bob, asset="TST", amount=150), key())
    assert (balance(stack, alice), balance(stack, bob)) == (600, 150)
    transaction = used.body["transaction"]
    assert used.status == 201 and transaction["usage_id"] == usage_id and transaction["product"] == "gpu"
    assert {e["wallet_id"]: e["balance_after"] for e in transaction["entries"]}[alice] == 750


def test_system_account_balance_is_derived_from_its_entries(stack, service):
    revenue = system_account(stack, "TST", "revenue")
    before = service.get_wallet(CALLER, revenue)["balance"]
    wallet = new_wallet(stack, funded=100)
    service.usage(
        CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=30, usage_id=key("u"), product="p"), key()
    )
    after = service.get_wallet(CALLER, revenue)
    assert after["balance"] - before == 30 and after["kind"] == "system"
    assert sql(stack, "SELECT balance FROM ledger.wallets WHERE id = :w", w=revenue)[0][0] == 0  # never cached


def test_usage_beyond_the_balance_is_refused_and_the_refusal_is_sticky(stack, service):
    wallet, k = new_wallet(stack, funded=100), key()
    cmd = commands.Usage(wallet_id=wallet, asset="TST", amount=101, usage_id=key("u"), product="p")
    with pytest.raises(Refused) as refused:
        service.usage(CALLER, cmd, k)
    assert refused.value.code == "insufficient_funds"
    service.top_up(CALLER, commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref=key("r")), key())
    replay = service.usage(CALLER, cmd, k)  # funds exist now, but this key already failed
    assert replay.status == 422 and replay.replayed and balance(stack, wallet) == 200


def test_a_credit_limit_allows_going_negative_down_to_it(stack, service):
    wallet = new_wallet(stack, credit_limit=50)
    service.usage(
        CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=50, usage_id=key("u"), product="p"), key()
    )
    assert balance(stack, wallet) == -50
    with pytest.raises(Refused):
        service.usage(
            CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=1, usage_id=key("u"), product="p"), key()
        )


def test_frozen_and_closed_wallets_move_no_money(stack, service):
    wallet = new_wallet(stack, funded=10)
    service.update_wallet(CALLER, wallet, commands.UpdateWallet(status="frozen"))
    for action in (
        lambda: service.top_up(
            CALLER, commands.TopUp(wallet_id=wallet, asset="TST", amount=1, external_ref=key("r")), key()
        ),
        lambda: service.usage(
            CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=1, usage_id=key("u"), product="p"), key()
        ),
    ):
        with pytest.raises(Refused) as refused:
            action()
        assert refused.value.code == "wallet_frozen"
    with pytest.raises(Refused) as refused:
        service.update_wallet(CALLER, wallet, commands.UpdateWallet(status="closed"))
    assert refused.value.code == "wallet_not_empty"
    assert balance(stack, wallet) == 10


def test_asset_mismatch_and_unknown_wallet(stack, service):
    wallet = new_wallet(stack, funded=10)
    with pytest.raises(Refused) as mismatch:
        service.top_up(CALLER, commands.TopUp(wallet_id=wallet, asset="IDR", amount=1, external_ref=key("r")), key())
    assert mismatch.value.code in ("asset_mismatch", "unknown_asset")
    with pytest.raises(NotFound):
        service.top_up(CALLER, commands.TopUp(wallet_id=2**62, asset="TST", amount=1, external_ref=key("r")), key())


def test_void_reverses_exactly_once(stack, service):
    wallet = new_wallet(stack, funded=100)
    used = service.usage(
        CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=40, usage_id=key("u"), product="p"), key()
    )
    original = used.body["transaction"]["id"]
    void_key = key()
    voided = service.void(CALLER, commands.Void(transaction_id=original, reason="refund"), void_key)
    assert balance(stack, wallet) == 100 and voided.body["transaction"]["voids_transaction_id"] == original
    assert service.void(CALLER, commands.Void(transaction_id=original, reason="refund"), void_key).replayed
    with pytest.raises(Refused) as again:
        service.void(CALLER, commands.Void(transaction_id=original), key())
    assert again.value.code == "already_voided"
    with pytest.raises(Refused) as void_of_void:
        service.void(CALLER, commands.Void(transaction_id=voided.body["transaction"]["id"]), key())
    assert void_of_void.value.code == "not_voidable"
    assert service.get_transaction(CALLER, original)["voided_by"] == voided.body["transaction"]["id"]


def test_voiding_a_spent_top_up_is_refused(stack, service):
    wallet = new_wallet(stack)
    topup = service.top_up(
        CALLER, commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref=key("r")), key()
    )
    service.usage(
        CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=60, usage_id=key("u"), product="p"), key()
    )
    with pytest.raises(Refused) as refused:
        service.void(CALLER, commands.Void(transaction_id=topup.body["transaction"]["id"]), key())
    assert refused.value.code == "credit_already_spent" and balance(stack, wallet) == 40


def test_history_filters_and_pages_newest_first(stack, service):
    wallet = new_wallet(stack, funded=1000)
    for n in range(5):
        service.usage(
            CALLER,
            commands.Usage(wallet_id=wallet, asset="TST", amount=n + 1, usage_id=key(f"u{n}"), product="p"),
            key(),
        )
    first = service.history(CALLER, wallet, commands.HistoryQuery(limit=2, action="usage"))
    second = service.history(
        CALLER, wallet, commands.HistoryQuery(limit=2, action="usage", cursor=first["next_cursor"])
    )
    third = service.history(
        CALLER, wallet, commands.HistoryQuery(limit=2, action="usage", cursor=second["next_cursor"])
    )
    amounts = [item["amount"] for page in (first, second, third) for item in page["items"]]
    assert amounts == [-5, -4, -3, -2, -1] and third["next_cursor"] is None
    everything = service.history(CALLER, wallet, commands.HistoryQuery(limit=50))["items"]
    assert [item["action"] for item in everything][-1] == "topup" and len(everything) == 6
    later = commands.HistoryQuery.model_validate({"from": "2999-01-01T00:00:00Z"})
    assert service.history(CALLER, wallet, later)["items"] == []


def test_a_new_transaction_renders_exactly_as_the_stored_one_reads_back(stack, service):
    wallet, other = new_wallet(stack, funded=100), new_wallet(stack)
    outcomes = [
        service.top_up(
            CALLER,
            commands.TopUp(
                wallet_id=wallet,
                asset="TST",
                amount=5,
                external_ref=key("r"),
                description="d",
                metadata={"order": "o-1", "n": 3, "flag": True, "none": None},
            ),
            key(),
        ),
        service.usage(
            CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=5, usage_id=key("u"), product="p"), key()
        ),
        service.transfer(
            CALLER, commands.Transfer(from_wallet_id=wallet, to_wallet_id=other, asset="TST", amount=5), key()
        ),
    ]
    outcomes.append(service.void(CALLER, commands.Void(transaction_id=outcomes[1].body["transaction"]["id"]), key()))
    for outcome in outcomes:
        rendered = outcome.body["transaction"]
        stored = sql(stack, "SELECT ledger.transaction_json(:id)", id=rendered["id"])[0][0]
        assert rendered == stored
