"""A posting whose connection is lost after it was sent may or may not have committed:
the answer says so (503 `outcome_unknown`), never that nothing was posted, and a retry
under the same key settles it: a replay if it committed, else one posting now."""

from __future__ import annotations

import threading

from common import bootstrap
from common.errors import OutcomeUnknown
from common.ledger import commands
from emulators.stack import wait_for
from tests.support import CALLER, balance, key, new_wallet, owner, postings_with_key, sql

WAITING = "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"


def test_a_posting_killed_at_the_database_has_an_unknown_outcome_and_its_retry_posts_once(stack):
    service = bootstrap.service()
    wallet, k = new_wallet(stack), key()
    cmd = commands.TopUp(wallet_id=wallet, asset="TST", amount=100, external_ref=key("psp"))
    holder = owner(stack)
    holder.run("BEGIN")
    holder.run("SELECT 1 FROM ledger.wallets WHERE id = :w FOR NO KEY UPDATE", w=wallet)
    answers: list[object] = []

    def post() -> None:
        try:
            answers.append(service.top_up(CALLER, cmd, k))
        except Exception as error:  # noqa: BLE001 - recorded for the assertions
            answers.append(error)

    posting = threading.Thread(target=post)
    posting.start()
    wait_for(lambda: sql(stack, WAITING) == [[1]], "the posting to wait for the wallet", 20)
    # as a connection dropped by the network or a failover would: the statement was sent
    stack.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'",
        database="ledger",
    )
    posting.join(30)
    holder.run("ROLLBACK")
    holder.close()
    [answer] = answers
    assert isinstance(answer, OutcomeUnknown), answer
    assert (answer.status, answer.code) == (503, "outcome_unknown")
    assert "nothing was posted" not in answer.message and "same Idempotency-Key" in answer.message

    retried = service.top_up(CALLER, cmd, k)  # this one was rolled back: the retry posts it
    assert retried.status == 201 and not retried.replayed
    again = service.top_up(CALLER, cmd, k)
    assert again.replayed and again.body == retried.body
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 100
