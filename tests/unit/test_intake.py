"""Bulk usage intake's pure rules: what a usage id decided before, or repeated inside
its batch, answers."""

from common.intake import Decided, RecordOutcome, decided_outcome, repeated_outcome


def test_a_posting_answers_the_same_usage_and_refuses_other_content():
    posted = Decided("hash-a", transaction_id=7)
    assert decided_outcome(3, "u-1", "hash-a", posted) == RecordOutcome(3, "u-1", "replayed", transaction_id=7)
    other = decided_outcome(3, "u-1", "hash-b", posted)
    assert (other.status, other.code, other.details) == ("refused", "usage_id_already_posted", {"transaction_id": 7})


def test_a_kept_refusal_answers_whatever_the_content():
    kept = Decided("hash-a", code="insufficient_funds", message="insufficient funds", details={"wallet_id": 4})
    for request_hash in ("hash-a", "hash-b"):
        outcome = decided_outcome(0, "u-1", request_hash, kept)
        assert (outcome.status, outcome.code, outcome.details) == ("refused", "insufficient_funds", {"wallet_id": 4})


def test_a_repeat_inside_a_batch_gets_the_first_records_outcome():
    posted = RecordOutcome(0, "u-1", "posted", transaction_id=9)
    assert repeated_outcome(4, posted, same_request=True) == RecordOutcome(4, "u-1", "replayed", transaction_id=9)
    assert repeated_outcome(4, posted, same_request=False).code == "usage_id_already_posted"
    refused = RecordOutcome(0, "u-1", "refused", "wallet_frozen", "wallet frozen", {"wallet_id": 2})
    assert repeated_outcome(5, refused, same_request=False) == RecordOutcome(
        5, "u-1", "refused", "wallet_frozen", "wallet frozen", {"wallet_id": 2}
    )
    retry = RecordOutcome(0, "u-1", "retry", "dependency_unavailable", "down")
    assert not repeated_outcome(1, retry, same_request=True).final
