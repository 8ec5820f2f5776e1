"""Bulk usage intake (issue 15), in-process through the service on the real stack: each
record of a batch gets its own outcome, a usage id posts at most once per tenant
whichever way it comes and however often, and a repeated id gets the first outcome."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from common.adapters.ledger_store import MAX_POSTINGS_PER_CALL
from common.auth.callers import Caller, Grant, Principal
from common.ledger import commands
from tests.support import CALLER, LedgerProxy, balance, key, ledger_service, new_wallet, sql, system_account


@pytest.fixture
def service(stack):
    return ledger_service()


def record(wallet: int, usage_id: str | None = None, amount: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "wallet_id": wallet,
        "asset": "TST",
        "amount": amount,
        "usage_id": usage_id or key("u"),
        "product": "gpu",
        **extra,
    }


def postings_of(stack, usage_ids: list[str]) -> dict[str, int]:
    rows = sql(
        stack,
        "SELECT usage_id, count(*) FROM ledger.transactions WHERE action = 'usage' AND tenant = 'tests'"
        " AND usage_id = ANY (CAST(:ids AS text[])) GROUP BY usage_id",
        ids=usage_ids,
    )
    return {usage_id: count for usage_id, count in rows}


def statuses(result) -> list[str]:
    return [outcome.status for outcome in result.outcomes]


def top_up(stack, wallet: int, amount: int) -> None:
    funding = system_account(stack, "TST", "funding")
    sql(
        stack,
        "SELECT ledger.commit_posting(:k, 'setup', 'topup', 'TST', :amt, :w, NULL, CAST(:legs AS bigint[]),"
        " CAST(:amts AS bigint[]), :k)",
        k=key("setup"),
        amt=amount,
        w=wallet,
        legs=[funding, wallet],
        amts=[-amount, amount],
    )


def test_the_same_batch_three_times_posts_each_record_once(stack, service):
    wallets = [new_wallet(stack, funded=1000) for _ in range(3)]
    batch = [record(wallets[i % 3]) for i in range(9)]
    first = service.usage_batch(CALLER, batch)
    assert statuses(first) == ["posted"] * 9
    posted = [outcome.transaction_id for outcome in first.outcomes]
    for _ in range(2):
        again = service.usage_batch(CALLER, batch)
        assert statuses(again) == ["replayed"] * 9
        assert [outcome.transaction_id for outcome in again.outcomes] == posted
        assert again.db_calls == 0
    assert postings_of(stack, [r["usage_id"] for r in batch]) == {r["usage_id"]: 1 for r in batch}
    assert [balance(stack, wallet) for wallet in wallets] == [970] * 3


def test_two_copies_at_once_post_each_record_once(stack, service):
    wallets = [new_wallet(stack, funded=10_000) for _ in range(4)]
    batch = [record(wallets[i % 4]) for i in range(2 * MAX_POSTINGS_PER_CALL + 5)]
    start = threading.Barrier(2)
    results: list[Any] = [None, None]

    def send(copy: int) -> None:
        start.wait()
        results[copy] = service.usage_batch(CALLER, batch)

    threads = [threading.Thread(target=send, args=(copy,)) for copy in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for copy, result in enumerate(results):
        # a copy that waited too long for the other's wallets retries (a redelivery)
        while not result.final:
            result = results[copy] = service.usage_batch(CALLER, batch)
    for first, second in zip(results[0].outcomes, results[1].outcomes, strict=True):
        assert {first.status, second.status} <= {"posted", "replayed"}
        assert first.transaction_id == second.transaction_id
    assert postings_of(stack, [r["usage_id"] for r in batch]) == {r["usage_id"]: 1 for r in batch}
    assert sum(balance(stack, wallet) for wallet in wallets) == 40_000 - 10 * len(batch)


def test_a_poison_record_gets_its_own_outcome_and_blocks_no_other(stack, service):
    wallet = new_wallet(stack, funded=100)
    good = [record(wallet), record(wallet)]
    batch = [good[0], "not an object", record(wallet, amount=-5), {"usage_id": "u-half"}, 7.5, good[1]]
    result = service.usage_batch(CALLER, batch)
    assert statuses(result) == ["posted", "invalid", "invalid", "invalid", "invalid", "posted"]
    negative = result.outcomes[2]
    assert negative.code == "validation_failed" and negative.usage_id == batch[2]["usage_id"]
    assert [problem["field"] for problem in negative.details] == ["amount"]
    assert result.outcomes[3].usage_id == "u-half" and result.outcomes[1].usage_id is None
    assert result.counts() == {"posted": 2, "invalid": 4}
    assert balance(stack, wallet) == 80


def test_a_usage_posted_over_the_service_first_is_replayed_or_refused(stack, service):
    wallet = new_wallet(stack, funded=100)
    first = record(wallet)
    posted = service.usage(CALLER, commands.Usage.model_validate(first), key())
    transaction_id = posted.body["transaction"]["id"]
    other_content = {**first, "amount": 11}
    result = service.usage_batch(CALLER, [first, other_content])
    replayed, refused = result.outcomes
    assert (replayed.status, replayed.transaction_id) == ("replayed", transaction_id)
    assert (refused.status, refused.code) == ("refused", "usage_id_already_posted")
    assert refused.details == {"transaction_id": transaction_id}
    assert balance(stack, wallet) == 90


def test_a_refusal_is_final_and_the_id_keeps_it_after_a_top_up(stack, service):
    wallet = new_wallet(stack, funded=5)
    short = record(wallet, amount=10)
    first = service.usage_batch(CALLER, [short]).outcomes[0]
    assert (first.status, first.code) == ("refused", "insufficient_funds")
    assert first.details["requested"] == 10
    top_up(stack, wallet, 100)
    again = service.usage_batch(CALLER, [short, record(wallet, amount=10)])
    assert again.outcomes[0] == first  # the first outcome, not a posting now
    assert again.outcomes[1].status == "posted"  # a new try is a new usage id
    assert postings_of(stack, [short["usage_id"]]) == {}
    assert balance(stack, wallet) == 95


def test_a_frozen_wallet_refuses_its_records_only(stack, service):
    frozen, active = new_wallet(stack, funded=100), new_wallet(stack, funded=100)
    sql(stack, "SELECT ledger.update_wallet(:w, 'frozen', NULL, NULL, NULL, NULL)", w=frozen)
    result = service.usage_batch(CALLER, [record(frozen), record(active)])
    assert [(o.status, o.code) for o in result.outcomes] == [("refused", "wallet_frozen"), ("posted", None)]
    assert (balance(stack, frozen), balance(stack, active)) == (100, 90)


def test_a_wallet_outside_the_boundary_is_forbidden_as_http_hides_it(stack, service):
    mine = new_wallet(stack, funded=100, owner_id=key("metering"))
    elsewhere = new_wallet(stack, funded=100)
    owner_id = sql(stack, "SELECT owner_id FROM ledger.wallets WHERE id = :w", w=mine)[0][0]
    principal = Principal(
        "meter", "tests", "meter", "service", "tests", owner_id, (Grant("m", frozenset({"usage"}), "own"),)
    )
    bounded = Caller(principal, request_id="meter")
    result = service.usage_batch(bounded, [record(mine), record(elsewhere), record(10**12)])
    assert [(o.status, o.code) for o in result.outcomes] == [
        ("posted", None),
        ("forbidden", "wallet_not_found"),
        ("forbidden", "wallet_not_found"),
    ]
    reader = Caller(
        Principal("r", "tests", "r", "service", "tests", grants=(Grant("r", frozenset({"read"}), "all"),)), "r"
    )
    refused = service.usage_batch(reader, [record(mine)]).outcomes[0]
    assert (refused.status, refused.code) == ("forbidden", "forbidden")
    assert (balance(stack, mine), balance(stack, elsewhere)) == (90, 100)


def test_a_usage_id_repeated_inside_a_batch_counts_once(stack, service):
    wallet = new_wallet(stack, funded=100)
    first, other = record(wallet), record(wallet)
    batch = [first, other, dict(first), {**first, "amount": 12}, {**first, "amount": -1}]
    result = service.usage_batch(CALLER, batch)
    posted = result.outcomes[0].transaction_id
    assert [(o.status, o.transaction_id) for o in result.outcomes[:3]] == [
        ("posted", posted),
        ("posted", result.outcomes[1].transaction_id),
        ("replayed", posted),
    ]
    assert (result.outcomes[3].code, result.outcomes[3].details) == (
        "usage_id_already_posted",
        {"transaction_id": posted},
    )
    assert result.outcomes[4].status == "invalid"  # never counted: it isn't a usage
    assert balance(stack, wallet) == 80


def test_a_thousand_records_go_many_to_a_database_call(stack, service):
    wallets = [new_wallet(stack, funded=1000) for _ in range(50)]
    batch = [record(wallets[i % 50], amount=1) for i in range(1000)]
    result = service.usage_batch(CALLER, batch)
    assert result.counts() == {"posted": 1000}
    assert result.db_calls == -(-1000 // MAX_POSTINGS_PER_CALL)
    assert 1000 / result.db_calls > 1
    assert sum(balance(stack, wallet) for wallet in wallets) == 50 * 1000 - 1000


def test_postgres_down_mid_batch_retries_the_rest_and_posts_nothing_twice(stack):
    class StopsAfterFirstCall(LedgerProxy):
        calls = 0

        def post_batch(self, batch):
            answer = self._ledger.post_batch(batch)
            StopsAfterFirstCall.calls += 1
            if StopsAfterFirstCall.calls == 1:
                stack.stop_service("postgres")
            return answer

    from common import bootstrap

    wallet = new_wallet(stack, funded=1000)
    batch = [record(wallet, amount=1) for _ in range(MAX_POSTINGS_PER_CALL + 20)]
    service = ledger_service(StopsAfterFirstCall(bootstrap.ledger()))
    try:
        result = service.usage_batch(CALLER, batch)
    finally:
        stack.start_service("postgres")
    assert statuses(result) == ["posted"] * MAX_POSTINGS_PER_CALL + ["retry"] * 20
    # outcome_unknown: the pooled connection died under a call that was sent
    assert {o.code for o in result.outcomes[MAX_POSTINGS_PER_CALL:]} <= {"dependency_unavailable", "outcome_unknown"}
    assert not result.final

    redelivered = ledger_service().usage_batch(CALLER, batch)
    assert statuses(redelivered) == ["replayed"] * MAX_POSTINGS_PER_CALL + ["posted"] * 20
    assert postings_of(stack, [r["usage_id"] for r in batch]) == {r["usage_id"]: 1 for r in batch}
    assert balance(stack, wallet) == 1000 - len(batch)


def test_what_was_decided_is_looked_up_by_usage_id_not_by_scanning_the_tenant(stack, service):
    """One index lookup per usage id of the batch: a tenant's millions of usages are not
    read for each batch, whatever its statistics say."""
    import json

    from common.adapters.ledger_store import USAGE_DECISIONS_SQL

    wallet = new_wallet(stack, funded=1000)
    batch = [record(wallet, amount=1) for _ in range(200)]
    service.usage_batch(CALLER, batch)
    ids = json.dumps([batch[0]["usage_id"], batch[1]["usage_id"]])
    [[plan]] = sql(stack, "EXPLAIN (ANALYZE, FORMAT JSON) " + USAGE_DECISIONS_SQL, tenant="tests", ids=ids)

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    read = sum(
        n.get("Rows Removed by Filter", 0) + n.get("Actual Rows", 0) * n.get("Actual Loops", 1)
        for n in nodes(plan[0]["Plan"])
        if n.get("Relation Name") == "transactions"
    )
    assert read <= 2
