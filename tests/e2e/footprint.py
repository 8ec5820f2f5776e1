"""What a request left behind, for the tests of refused callers: a refusal (401, 403 or
404) must leave no row in any of the ledger's tables and claim no idempotency record.

Row counts are read as the database owner, around the application; idempotency
records straight from the Firestore emulator, under the document id the service would
use for a (tenant, key) pair (common.idempotency.record_id).
"""

from __future__ import annotations

from collections.abc import Iterable

import pg8000.native

from common import bootstrap
from common.config import get_settings
from common.idempotency import record_id
from emulators.stack import Stack

# Every table a request could write: postings, balances, lots, admin changes and their audit.
TABLES = (
    "transactions",
    "entries",
    "wallets",
    "lots",
    "lot_extensions",
    "spend_limits",
    "audit_log",
    "pending_changes",
    "outbox_events",
    "assets",
    "principals",
    "grants",
)


class Footprint:
    """Row counts of the ledger's tables, on one owner connection kept for a module."""

    def __init__(self, stack: Stack) -> None:
        self._con = pg8000.native.Connection(**stack.owner_dsn())

    def rows(self) -> dict[str, int]:
        counts = ", ".join(f"(SELECT count(*) FROM ledger.{table})" for table in TABLES)
        return dict(zip(TABLES, self._con.run(f"SELECT {counts}")[0], strict=True))

    def close(self) -> None:
        self._con.close()


def idempotency_records(tenants: Iterable[str], key: str) -> list[str]:
    """The tenants (of those given; "" for the unscoped id) that hold a record under `key`."""
    tenants = list(dict.fromkeys(tenants))
    collection = bootstrap.firestore_client().collection(get_settings().idempotency_collection)
    ids = {record_id(tenant, key): tenant for tenant in tenants}
    snapshots = bootstrap.firestore_client().get_all([collection.document(doc_id) for doc_id in ids])
    return sorted(ids[snapshot.id] for snapshot in snapshots if snapshot.exists)


def idempotency_record(tenant: str, key: str) -> dict | None:
    collection = bootstrap.firestore_client().collection(get_settings().idempotency_collection)
    snapshot = collection.document(record_id(tenant, key)).get()
    return snapshot.to_dict() if snapshot.exists else None
