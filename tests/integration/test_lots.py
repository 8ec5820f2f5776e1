"""Credit lots with expiry, against real Postgres, Redis and Firestore: the order usage
takes them in, the exact expiry instant, expired credit before and after the expiry
job, extensions, carrying expiry along allocations, and voids of lots."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from common import bootstrap
from common.errors import LedgerError, NotFound, Refused
from common.ledger import commands
from tests.support import CALLER, balance, key, owner, sql, system_account


@pytest.fixture
def service(stack):
    return bootstrap.service()


def later(**delta):
    return datetime.now(UTC) + timedelta(**delta)


def top_up(service, wallet_id, amount, expires_at=None):
    cmd = commands.TopUp(
        wallet_id=wallet_id, asset="TST", amount=amount, external_ref=key("pay"), expires_at=expires_at
    )
    return service.top_up(CALLER, cmd, key()).body["transaction"]


def use(service, wallet_id, amount):
    cmd = commands.Usage(wallet_id=wallet_id, asset="TST", amount=amount, usage_id=key("u"), product="gpu")
    return service.usage(CALLER, cmd, key()).body["transaction"]


def remaining(service, wallet_id):
    """{lot expiry (ISO): remaining} of every lot the wallet ever had."""
    return {lot["expires_at"]: lot["remaining"] for lot in service.lots(CALLER, wallet_id, include_closed=True)["lots"]}


def backdate_lots(stack, wallet_id, seconds=1):
    """Make a wallet's lots expire now: the owner moves their expiry into the past, as
    time passing would (the functions' role can't)."""
    sql(
        stack,
        "UPDATE ledger.lots SET expires_at = now() - make_interval(secs => :s) WHERE wallet_id = :w",
        s=seconds,
        w=wallet_id,
    )


def test_usage_takes_lots_earliest_expiry_first_and_non_expiring_credit_last(service):
    wallet = new_wallet_for(service)
    soon, later_on = later(days=1), later(days=30)
    top_up(service, wallet, 100)  # never expires
    top_up(service, wallet, 50, later_on)
    top_up(service, wallet, 30, soon)
    use(service, wallet, 40)
    assert [(lot["amount"], lot["remaining"]) for lot in service.lots(CALLER, wallet)["lots"]] == [
        (50, 40)
    ]  # open lots
    assert remaining(service, wallet) == {iso(soon): 0, iso(later_on): 40}
    use(service, wallet, 60)  # 40 from the later lot, then 20 of the non-expiring credit
    assert remaining(service, wallet) == {iso(soon): 0, iso(later_on): 0}
    assert (lots := service.lots(CALLER, wallet))["balance"] == 80 and lots["no_expiry"] == 80 and lots["lots"] == []


def new_wallet_for(service, **fields):
    return service.create_wallet(CALLER, commands.CreateWallet(owner_id=key("o"), asset="TST", **fields))["id"]


def iso(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post_usage_at_expiry(stack, wallet_id, amount, expires_in_us):
    """A usage judged exactly at its lots' expiry (expires_in_us = 0) or just before:
    in one transaction, whose now() stands still, the owner moves the wallet's lots to
    expire that many microseconds after now(), then the usage posts. A posting is
    dated by the database alone, so this is the deterministic way to stand on an
    expiry instant."""
    revenue = system_account(stack, "TST", "revenue")
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run(
            "UPDATE ledger.lots SET expires_at = now() + make_interval(secs => :s) WHERE wallet_id = :w",
            s=expires_in_us / 1_000_000,
            w=wallet_id,
        )
        transaction_id = con.run(
            "SELECT transaction_id FROM ledger.commit_posting(:k, 'h', 'usage', 'TST', :amt, :w, NULL,"
            " CAST(:legs AS bigint[]), CAST(:amts AS bigint[]))",
            k=key(),
            amt=amount,
            w=wallet_id,
            legs=[wallet_id, revenue],
            amts=[-amount, amount],
        )[0][0]
        con.run("COMMIT")
        return transaction_id
    finally:
        con.close()


def test_a_usage_at_the_exact_expiry_instant_finds_the_lot_expired(stack, service):
    """A lot is spendable while the clock is before its expiry: at the instant itself it
    has expired. One microsecond earlier the same usage goes through."""
    at_instant, just_before = new_wallet_for(service), new_wallet_for(service)
    for wallet in (at_instant, just_before):
        top_up(service, wallet, 100, datetime(2099, 1, 1, tzinfo=UTC))
    with pytest.raises(Exception, match="insufficient_funds") as refused:
        post_usage_at_expiry(stack, at_instant, 1, 0)
    assert '"expired": 100' in str(refused.value)
    post_usage_at_expiry(stack, just_before, 100, 1)
    assert (balance(stack, at_instant), balance(stack, just_before)) == (100, 0)


def test_expired_credit_is_not_available_even_before_the_expiry_job(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 100)
    top_up(service, wallet, 60, later(days=1))
    backdate_lots(stack, wallet)
    got = service.get_wallet(CALLER, wallet)
    assert (got["balance"], got["expiring"], got["expired"], got["available"]) == (160, 60, 60, 100)
    with pytest.raises(Refused) as refused:
        use(service, wallet, 101)
    assert refused.value.code == "insufficient_funds" and refused.value.details["available"] == 100
    use(service, wallet, 100)
    assert service.get_wallet(CALLER, wallet)["available"] == 0


def test_the_expiry_job_turns_expired_lots_into_breakage_once(stack, service):
    wallet, other = new_wallet_for(service), new_wallet_for(service)
    top_up(service, wallet, 100, later(days=1))
    top_up(service, wallet, 10)
    top_up(service, other, 40, later(days=2))
    use(service, wallet, 30)
    backdate_lots(stack, wallet)
    breakage = system_account(stack, "TST", "breakage")
    before = service.get_wallet(CALLER, breakage)["balance"]
    result = service.expire_lots()
    assert result["expired"] >= 1 and result["failed"] == 0
    assert balance(stack, wallet) == 10 and balance(stack, other) == 40  # the unexpired lot stays
    assert service.get_wallet(CALLER, breakage)["balance"] - before >= 70
    expiry = sql(
        stack,
        "SELECT t.action, t.amount, t.description FROM ledger.transactions t WHERE t.wallet_id = :w"
        " AND t.action = 'expiry'",
        w=wallet,
    )
    assert expiry == [["expiry", 70, "expired credit"]]
    assert service.expire_lots()["expired"] == 0  # a second run finds nothing left
    assert set(remaining(service, wallet).values()) == {0}


def test_expired_credit_is_never_spendable_whether_the_job_runs_before_during_or_after(stack, service):
    """Usages run while the expiry job works through the same wallets: whichever locks a
    wallet first, only the non-expiring 20 is ever spendable."""
    wallets = [new_wallet_for(service) for _ in range(10)]
    for wallet in wallets:
        top_up(service, wallet, 100, later(days=1))
        top_up(service, wallet, 20)
        backdate_lots(stack, wallet)

    def spend(wallet):
        try:
            use(service, wallet, 60)
            return "ok"
        except LedgerError as error:
            return error.code

    with ThreadPoolExecutor(11) as pool:
        job = pool.submit(service.expire_lots)
        results = list(pool.map(spend, wallets))
    job.result()
    service.expire_lots()
    assert set(results) == {"insufficient_funds"}  # only 20 was ever spendable
    assert all(balance(stack, wallet) == 20 for wallet in wallets)


def test_an_extension_moves_expiry_later_once_per_key(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 50, later(days=1))
    lot = service.lots(CALLER, wallet)["lots"][0]
    k, new_expiry = key(), later(days=10)
    extended = service.extend_lot(CALLER, lot["id"], commands.ExtendLot(expires_at=new_expiry, reason="goodwill"), k)
    again = service.extend_lot(CALLER, lot["id"], commands.ExtendLot(expires_at=new_expiry, reason="goodwill"), k)
    assert extended.body["lot"]["expires_at"] == iso(new_expiry) and again.replayed and not extended.replayed
    assert sql(stack, "SELECT count(*) FROM ledger.lot_extensions WHERE lot_id = :l", l=lot["id"])[0][0] == 1
    with pytest.raises(Refused) as refused:
        service.extend_lot(CALLER, lot["id"], commands.ExtendLot(expires_at=later(days=2)), key())
    assert refused.value.code == "expiry_not_later"
    backdate_lots(stack, wallet)
    with pytest.raises(Refused) as refused:
        service.extend_lot(CALLER, lot["id"], commands.ExtendLot(expires_at=later(days=20)), key())
    assert refused.value.code == "lot_expired"
    with pytest.raises(NotFound):
        service.extend_lot(CALLER, 999_999_999, commands.ExtendLot(expires_at=later(days=20)), key())


def test_an_allocation_carries_expiry_to_the_member(stack, service):
    root = new_wallet_for(service, model="enterprise")
    member = service.create_wallet(
        CALLER, commands.CreateWallet(owner_id="m", asset="TST", model="enterprise", parent_id=root)
    )["id"]
    expiry = later(days=3)
    top_up(service, root, 100, expiry)
    top_up(service, root, 100)
    service.allocate(CALLER, commands.Allocate(wallet_id=member, asset="TST", amount=150), key())
    member_lots = service.lots(CALLER, member)
    assert [(lot["remaining"], lot["expires_at"]) for lot in member_lots["lots"]] == [(100, iso(expiry))]
    assert member_lots["no_expiry"] == 50 and service.lots(CALLER, root)["expiring"] == 0
    assert member_lots["lots"][0]["source_lot_id"] is not None
    backdate_lots(stack, member)
    service.expire_lots()
    assert balance(stack, member) == 50


def test_a_void_of_a_partly_spent_lot_takes_its_rest_and_the_spent_part_from_other_credit(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 100)
    lot_top_up = top_up(service, wallet, 50, later(days=5))
    use(service, wallet, 20)  # taken from the lot: 30 left in it
    service.void(CALLER, commands.Void(transaction_id=lot_top_up["id"]), key())
    assert balance(stack, wallet) == 80 and service.lots(CALLER, wallet)["expiring"] == 0
    # policy of the ledger core: a void never pushes a wallet below its limit
    poor = new_wallet_for(service)
    spent_top_up = top_up(service, poor, 50, later(days=5))
    use(service, poor, 20)
    with pytest.raises(Refused) as refused:
        service.void(CALLER, commands.Void(transaction_id=spent_top_up["id"]), key())
    assert refused.value.code == "credit_already_spent" and balance(stack, poor) == 30


def test_a_void_of_a_usage_gives_its_lot_pieces_back(stack, service):
    wallet = new_wallet_for(service)
    expiry = later(days=5)
    top_up(service, wallet, 50, expiry)
    used = use(service, wallet, 30)
    assert remaining(service, wallet) == {iso(expiry): 20}
    service.void(CALLER, commands.Void(transaction_id=used["id"]), key())
    assert remaining(service, wallet) == {iso(expiry): 50}


def test_an_expiry_cannot_be_voided_and_a_lot_needs_a_future_expiry(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 10, later(days=1))
    backdate_lots(stack, wallet)
    service.expire_lots()
    expiry_id = sql(stack, "SELECT id FROM ledger.transactions WHERE wallet_id = :w AND action = 'expiry'", w=wallet)
    with pytest.raises(Refused) as refused:
        service.void(CALLER, commands.Void(transaction_id=expiry_id[0][0]), key())
    assert refused.value.code == "not_voidable"
    with pytest.raises(Refused) as refused:
        top_up(service, wallet, 10, later(seconds=-5))
    assert refused.value.code == "expiry_in_past"


def test_bonus_and_add_on_create_lots(service):
    wallet = new_wallet_for(service)
    service.bonus(CALLER, commands.Bonus(wallet_id=wallet, asset="TST", amount=5, expires_at=later(days=7)), key())
    service.add_on(
        CALLER,
        commands.AddOn(
            wallet_id=wallet, asset="TST", amount=20, external_ref=key("p"), plan="pro", expires_at=later(days=30)
        ),
        key(),
    )
    assert [lot["amount"] for lot in service.lots(CALLER, wallet)["lots"]] == [5, 20]


def test_a_void_of_credit_without_expiry_takes_non_expiring_credit_before_any_lot(service):
    """Otherwise the void would leave expiring credit behind as credit that never expires."""
    wallet = new_wallet_for(service)
    plain = top_up(service, wallet, 100)
    expiry = later(days=7)
    top_up(service, wallet, 50, expiry)
    service.void(CALLER, commands.Void(transaction_id=plain["id"]), key())
    lots = service.lots(CALLER, wallet)
    assert (lots["balance"], lots["expiring"], lots["no_expiry"]) == (50, 50, 0)
    assert remaining(service, wallet) == {iso(expiry): 50}


def test_a_void_of_credit_that_already_expired_into_breakage_is_refused(stack, service):
    """The expired part went to breakage; taking it again from other credit would charge
    the customer twice for it."""
    wallet = new_wallet_for(service)
    top_up(service, wallet, 500)
    expiring = top_up(service, wallet, 50, later(days=1))
    backdate_lots(stack, wallet)
    service.expire_lots()
    with pytest.raises(Refused) as refused:
        service.void(CALLER, commands.Void(transaction_id=expiring["id"]), key())
    assert refused.value.code == "credit_expired" and balance(stack, wallet) == 500


def test_a_transfer_carries_expiry_and_its_void_puts_the_lot_back(stack, service):
    alice, bob = new_wallet_for(service), new_wallet_for(service)
    expiry = later(days=4)
    top_up(service, alice, 100, expiry)
    moved = service.transfer(
        CALLER, commands.Transfer(from_wallet_id=alice, to_wallet_id=bob, asset="TST", amount=60), key()
    ).body["transaction"]
    assert remaining(service, alice) == {iso(expiry): 40}
    assert [(lot["remaining"], lot["expires_at"]) for lot in service.lots(CALLER, bob)["lots"]] == [(60, iso(expiry))]
    service.void(CALLER, commands.Void(transaction_id=moved["id"]), key())
    assert remaining(service, alice) == {iso(expiry): 100}
    assert service.lots(CALLER, bob)["expiring"] == 0 and balance(stack, bob) == 0


def test_a_lot_refilled_by_a_void_after_it_expired_expires_again_under_a_new_key(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 50, later(days=1))
    used = use(service, wallet, 30)
    backdate_lots(stack, wallet)
    assert service.expire_lots()["amount"] >= 20
    service.void(CALLER, commands.Void(transaction_id=used["id"]), key())  # gives 30 back to the expired lot
    assert service.get_wallet(CALLER, wallet)["available"] == 0  # expired, so not spendable
    service.expire_lots()
    expiries = sql(
        stack,
        "SELECT amount, idempotency_key FROM ledger.transactions WHERE wallet_id = :w AND action = 'expiry'"
        " ORDER BY id",
        w=wallet,
    )
    assert [amount for amount, _ in expiries] == [20, 30] and expiries[0][1] != expiries[1][1]
    assert balance(stack, wallet) == 0  # all 50 of the lot became breakage or revenue, once


def test_concurrent_copies_of_one_extension_answer_alike_and_extend_once(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 50, later(days=1))
    lot_id = service.lots(CALLER, wallet)["lots"][0]["id"]
    k, cmd = key(), commands.ExtendLot(expires_at=later(days=30))
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: service.extend_lot(CALLER, lot_id, cmd, k), range(8)))
    assert len({outcome.body["lot"]["expires_at"] for outcome in outcomes}) == 1
    assert sorted(outcome.replayed for outcome in outcomes) == [False] + [True] * 7
    assert sql(stack, "SELECT count(*) FROM ledger.lot_extensions WHERE lot_id = :l", l=lot_id)[0][0] == 1


def test_the_expiry_jobs_idempotency_keys_are_reserved(service):
    wallet = new_wallet_for(service)
    with pytest.raises(LedgerError) as refused:
        service.top_up(
            CALLER, commands.TopUp(wallet_id=wallet, asset="TST", amount=5, external_ref=key("r")), "lot-expiry:1:1"
        )
    assert refused.value.code == "invalid_posting" and refused.value.status == 400


def test_a_void_gives_back_credit_with_the_expiry_of_what_the_payee_paid_with(stack, service):
    """Alice's long-lived lot went to Bob, who spent it; Bob's void of the transfer is
    paid from a bonus that expires tomorrow, so alice gets tomorrow's expiry back, not
    her old lot refilled (which would stretch a one-day bonus to a year)."""
    alice, bob = new_wallet_for(service), new_wallet_for(service)
    year, tomorrow = later(days=365), later(days=1)
    top_up(service, alice, 100, year)
    moved = service.transfer(
        CALLER, commands.Transfer(from_wallet_id=alice, to_wallet_id=bob, asset="TST", amount=100), key()
    ).body["transaction"]
    use(service, bob, 100)
    service.bonus(CALLER, commands.Bonus(wallet_id=bob, asset="TST", amount=100, expires_at=tomorrow), key())
    service.void(CALLER, commands.Void(transaction_id=moved["id"]), key())
    assert [(lot["remaining"], lot["expires_at"]) for lot in service.lots(CALLER, alice)["lots"]] == [
        (100, iso(tomorrow))
    ]
    assert balance(stack, bob) == 0 and balance(stack, alice) == 100


def test_a_void_of_an_expiring_top_up_keeps_the_wallets_non_expiring_credit(stack, service):
    wallet = new_wallet_for(service)
    top_up(service, wallet, 100)  # never expires
    lot_top_up = top_up(service, wallet, 100, later(days=5))
    use(service, wallet, 60)  # from the lot: 40 left
    top_up(service, wallet, 100, later(days=9))
    service.void(CALLER, commands.Void(transaction_id=lot_top_up["id"]), key())
    lots = service.lots(CALLER, wallet)
    assert (lots["balance"], lots["no_expiry"], lots["expiring"]) == (140, 100, 40)
