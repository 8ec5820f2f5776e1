"""A message's failure record expires with the dead letter it explains."""

from datetime import UTC, datetime, timedelta

from common.adapters.firestore_failures import KEPT_S, FailureLog


class Written:
    def __init__(self):
        self.sets = []

    def collection(self, name):
        return self

    def document(self, doc_id):
        return self

    def set(self, data, **kwargs):
        self.sets.append(data)


def test_a_failure_record_carries_its_expiry_for_the_ttl_policy():
    client = Written()
    FailureLog(client, "action_failures", 1.0).record("f-1", "service_unavailable: postgres")
    (record,) = client.sets
    expected = datetime.now(UTC) + timedelta(seconds=KEPT_S)
    assert abs(record["expire_at"] - expected) < timedelta(minutes=1)
    assert record["last_error"] == "service_unavailable: postgres"
