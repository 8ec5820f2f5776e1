"""Copies of one request that race each other answer with the one posting under their
key, and a key never carries two different requests, even past its Firestore record."""

from datetime import UTC, datetime, timedelta

import pytest

from common import bootstrap
from common.config import get_settings
from common.errors import Refused
from common.idempotency import IN_PROGRESS, fingerprint, record_id
from common.ledger import commands
from tests.support import CALLER, LedgerProxy, balance, key, ledger_service, new_wallet, postings_with_key


class PostsThenRefuses(LedgerProxy):
    """The ledger as a copy sees it when another copy posted under the same key a moment
    before its own attempt was refused (two voids of one transaction racing, say)."""

    def post(self, *args, **kwargs):
        self._ledger.post(*args, **kwargs)
        raise Refused("the transaction is already voided", code="already_voided")


def test_a_refusal_after_another_copy_posted_answers_with_that_posting(stack):
    wallet, k = new_wallet(stack), key()
    service = ledger_service(PostsThenRefuses(bootstrap.ledger()))
    outcome = service.top_up(CALLER, commands.TopUp(wallet_id=wallet, asset="TST", amount=70, external_ref=key("p")), k)
    assert outcome.status == 201 and outcome.replayed
    assert outcome.body["transaction"]["amount"] == 70
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 70


def test_a_claim_for_another_request_under_a_posted_key_is_refused(stack):
    """The Firestore record expired and a different request claimed the key: Postgres
    still knows what the key posted, and a copy of the new request is refused."""
    service = bootstrap.service()
    wallet, k = new_wallet(stack), key()
    first = commands.TopUp(wallet_id=wallet, asset="TST", amount=10, external_ref=key("p"))
    service.top_up(CALLER, first, k)
    other = commands.TopUp(wallet_id=wallet, asset="TST", amount=99, external_ref=key("p"))
    now = datetime.now(UTC)
    records = bootstrap.firestore_client().collection(get_settings().idempotency_collection)
    records.document(record_id(CALLER.tenant, k)).set(
        {
            "key": k,
            "state": IN_PROGRESS,
            "fingerprint": fingerprint("topup", other.model_dump(mode="json")),
            "lease_until": now + timedelta(seconds=30),
            "expire_at": now + timedelta(hours=1),
        },
    )
    with pytest.raises(Refused) as refused:
        service.top_up(CALLER, other, k)
    assert refused.value.code == "idempotency_key_reused"
    assert postings_with_key(stack, k) == 1 and balance(stack, wallet) == 10
