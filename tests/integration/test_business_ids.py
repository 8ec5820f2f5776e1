"""A business id posts once per tenant, whatever the Idempotency-Key (issue 14): a
payment's reference once per top-up and per add-on, a usage id once per usage. The
same request under a second key gets the first outcome; another request is refused
409 naming the first posting. Two copies at once under two keys post once."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from pg8000.exceptions import DatabaseError

from common import bootstrap
from common.adapters.firestore_idempotency import FirestoreRecordStore
from common.adapters.ledger_store import PostgresLedger
from common.auth.callers import SCOPES, Caller, Grant, Principal
from common.config import get_settings
from common.errors import AlreadyPosted
from common.idempotency import Idempotency
from common.ledger import commands
from emulators import database as stack_database
from emulators.stack import wait_for
from tests.support import CALLER, balance, key, ledger_service, new_wallet, owner, sql, system_account

OTHER_TENANT = Caller(
    Principal("tests-b", "tests", "tests-b", "service", "tests-b", grants=(Grant("t", frozenset(SCOPES), "all"),)),
    request_id="tests-b",
)


def transactions_with(stack, column: str, value: str) -> list[list]:
    return sql(stack, f"SELECT id FROM ledger.transactions WHERE {column} = :v ORDER BY id", v=value)


def service_with(ledger=None):
    # A short wait: a retry that can't find its answer gives up (409) instead of waiting 10 s.
    settings = get_settings()
    store = FirestoreRecordStore(
        bootstrap.firestore_client(), settings.idempotency_collection, settings.firestore_timeout_s
    )
    idempotency = Idempotency(store, ttl_s=3600, wait_s=0.5, lease_s=30)
    return ledger_service(ledger, idempotency=lambda: idempotency)


@pytest.fixture
def service(stack):
    return service_with()


def top_up(wallet: int, reference: str, amount: int = 100) -> commands.TopUp:
    return commands.TopUp(wallet_id=wallet, asset="TST", amount=amount, external_ref=reference)


def use(wallet: int, usage_id: str, amount: int = 10) -> commands.Usage:
    return commands.Usage(wallet_id=wallet, asset="TST", amount=amount, usage_id=usage_id, product="gpu")


def test_one_payment_under_two_keys_is_credited_once(stack, service):
    wallet, reference = new_wallet(stack), key("psp")
    first = service.top_up(CALLER, top_up(wallet, reference), key())
    second_key = key()
    second = service.top_up(CALLER, top_up(wallet, reference), second_key)
    assert second.status == 201 and second.replayed
    assert second.body == first.body  # the first outcome, under the first's key
    # the second key's own retry (its claim is still in Firestore) answers the same at once
    again = service.top_up(CALLER, top_up(wallet, reference), second_key)
    assert again.status == 201 and again.replayed and again.body == first.body
    assert balance(stack, wallet) == 100
    assert len(transactions_with(stack, "external_ref", reference)) == 1


def test_another_request_for_a_posted_payment_is_refused_naming_it(stack, service):
    wallet, reference = new_wallet(stack), key("psp")
    first = service.top_up(CALLER, top_up(wallet, reference), key())
    with pytest.raises(AlreadyPosted) as refused:
        service.top_up(CALLER, top_up(wallet, reference, amount=101), key())
    assert refused.value.status == 409 and refused.value.code == "external_ref_already_posted"
    assert refused.value.details == {"transaction_id": first.body["transaction"]["id"]}
    assert balance(stack, wallet) == 100


def test_one_usage_under_two_keys_is_charged_once(stack, service):
    wallet, usage_id = new_wallet(stack, funded=100), key("u")
    first = service.usage(CALLER, use(wallet, usage_id), key())
    second = service.usage(CALLER, use(wallet, usage_id), key())
    assert second.replayed and second.body == first.body
    with pytest.raises(AlreadyPosted) as refused:
        service.usage(CALLER, use(wallet, usage_id, amount=11), key())
    assert refused.value.code == "usage_id_already_posted"
    assert refused.value.details == {"transaction_id": first.body["transaction"]["id"]}
    assert balance(stack, wallet) == 90


def test_what_stays_shareable(stack, service):
    """A void copies its usage's id; a bonus's external_ref is its campaign; a top-up and
    an add-on are two actions; another tenant's equal reference is another business's."""
    wallet, usage_id, reference = new_wallet(stack, funded=100), key("u"), key("psp")
    used = service.usage(CALLER, use(wallet, usage_id), key())
    void = service.void(CALLER, commands.Void(transaction_id=used.body["transaction"]["id"]), key())
    assert void.body["transaction"]["usage_id"] == usage_id and not void.replayed
    campaign = key("campaign")
    for _ in range(2):
        bonus = commands.Bonus(wallet_id=wallet, asset="TST", amount=5, campaign=campaign)
        assert not service.bonus(CALLER, bonus, key()).replayed
    service.top_up(CALLER, top_up(wallet, reference), key())
    add_on = commands.AddOn(wallet_id=wallet, asset="TST", amount=100, external_ref=reference)
    assert not service.add_on(CALLER, add_on, key()).replayed
    assert not service.top_up(OTHER_TENANT, top_up(wallet, reference), key()).replayed
    assert balance(stack, wallet) == 100 + 10 + 300


def test_the_database_refuses_a_second_posting_whoever_calls(stack):
    """Around Python: ledger.commit_posting() as the owner, then a plain INSERT."""
    wallet, reference = new_wallet(stack), key("psp")
    funding = system_account(stack, "TST", "funding")
    post = (
        "SELECT replayed, transaction_id FROM ledger.commit_posting(:k, :h, 'topup', 'TST', 5, :w, NULL,"
        " CAST(:legs AS bigint[]), CAST(:amounts AS bigint[]), :ref)"
    )
    legs = {"w": wallet, "legs": [funding, wallet], "amounts": [-5, 5], "ref": reference}
    [[replayed, first]] = sql(stack, post, k=key(), h="same", **legs)
    assert not replayed
    assert sql(stack, post, k=key(), h="same", **legs) == [[True, first]]
    with pytest.raises(DatabaseError) as refused:
        sql(stack, post, k=key(), h="another", **legs)
    assert refused.value.args[0]["M"] == "external_ref_already_posted"
    with pytest.raises(DatabaseError) as duplicate:
        sql(
            stack,
            "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id,"
            " external_ref) VALUES (:k, 'h', 'topup', 'TST', 5, :w, :ref)",
            k=key(),
            w=wallet,
            ref=reference,
        )
    assert duplicate.value.args[0]["n"] == "transactions_tenant_external_ref_unique"
    assert balance(stack, wallet) == 5


def test_two_copies_at_once_under_two_keys_post_once(stack):
    """Both pass the lookup before either commits: the first holds the wallet (a test
    transaction holds it first), the second waits on the business id's unique index.
    When the first commits the second fails there, is posted again, and answers with
    the first's posting. (Each posts on its own: under group commit the second would
    wait for the first in the function instead.)"""
    service = service_with(PostgresLedger(bootstrap.pool()))
    wallet, reference = new_wallet(stack), key("psp")
    service.top_up(CALLER, top_up(new_wallet(stack), key("psp")), key())  # clients connected before the race
    holder = owner(stack)
    holder.run("BEGIN")
    holder.run("SELECT 1 FROM ledger.wallets WHERE id = :w FOR NO KEY UPDATE", w=wallet)
    outcomes: dict[str, object] = {}

    def post(name: str) -> None:
        try:
            outcomes[name] = service.top_up(CALLER, top_up(wallet, reference), key(name))
        except Exception as error:  # noqa: BLE001 - recorded for the assertions
            outcomes[name] = error

    threads = [threading.Thread(target=post, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    # the first waits for the test's transaction, the second for the first's (pg_locks, unlike
    # pg_stat_activity, shows another role's sessions)
    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
    wait_for(lambda: sql(stack, waiting) == [[2]], "both copies to wait at the database", 20)
    holder.run("ROLLBACK")
    holder.close()
    for thread in threads:
        thread.join()
    answers = list(outcomes.values())
    assert all(getattr(answer, "status", None) == 201 for answer in answers), answers
    assert sorted(answer.replayed for answer in answers) == [False, True]
    assert answers[0].body == answers[1].body
    assert len(transactions_with(stack, "external_ref", reference)) == 1 and balance(stack, wallet) == 100


def test_group_commit_posts_a_business_id_once(stack):
    """Two postings of one payment in one batch of ledger.commit_postings(): the second
    answers with the first (the same request) or is refused (another)."""
    wallet, reference = new_wallet(stack), key("psp")
    funding = system_account(stack, "TST", "funding")

    def item(number: int, request_hash: str) -> dict:
        return {
            "item": number,
            "key": key(),
            "request_hash": request_hash,
            "action": "topup",
            "asset": "TST",
            "amount": 7,
            "wallet_id": wallet,
            "leg_wallets": [funding, wallet],
            "leg_amounts": [-7, 7],
            "external_ref": reference,
            "tenant": "tests",
        }

    rows = sql(
        stack,
        "SELECT item, replayed, transaction_id, error_message FROM ledger.commit_postings(CAST(:b AS jsonb))",
        b=json.dumps([item(0, "h"), item(1, "h"), item(2, "another")]),
    )
    [first, same, other] = rows
    assert first[1:] == [False, first[2], None]
    assert same[1:] == [True, first[2], None]
    assert other[1:] == [None, None, "external_ref_already_posted"]
    assert balance(stack, wallet) == 7


def test_a_database_holding_duplicates_is_not_upgraded(stack):
    """Migration 0009 on a ledger where one payment was credited twice: it fails naming
    them, and changes nothing."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    stack.psql(f"CREATE DATABASE {name} OWNER ledger_owner")
    dsn = {**stack.owner_dsn(), "database": name}
    try:
        config = Config(str(Path(stack_database.__file__).parents[1] / "alembic.ini"))
        config.set_main_option("script_location", str(Path(stack_database.__file__).parents[1] / "db"))
        config.attributes["url"] = stack_database.owner_url(dsn)  # an object: db/env.py
        command.upgrade(config, "0008_hash_chain")
        con = stack_database.owner_connection(dsn)
        try:
            con.run("INSERT INTO ledger.assets (code, scale) VALUES ('DUP', 0)")
            ids = [
                con.run(
                    "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount,"
                    " wallet_id, external_ref, tenant) VALUES (:k, 'h', 'topup', 'DUP', 5, 1, 'psp_777', 't')"
                    " RETURNING id",
                    k=k,
                )[0][0]
                for k in ("k1", "k2")
            ]
        finally:
            con.close()
        with pytest.raises(Exception, match="1 business id.s. posted more than once") as refused:
            stack_database.migrate(dsn)
        assert f"tenant 't' topup 'psp_777': transactions {ids[0]}, {ids[1]}" in str(refused.value)
        con = stack_database.owner_connection(dsn)
        try:
            assert con.run("SELECT version_num FROM public.alembic_version") == [["0008_hash_chain"]]
        finally:
            con.close()
    finally:
        stack.psql(f"DROP DATABASE {name} WITH (FORCE)")
