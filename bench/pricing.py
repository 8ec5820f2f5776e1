"""Cost per million actions at Google Cloud's published list prices (pure: no I/O).

The prices are list prices in USD as read on PRICES_READ from the pages in SOURCES;
docs/cost.md states the same figures and the assumptions. bench/cost.py feeds in what
it measured per function (CPU seconds, latency, requests) and what Terraform deploys
(vCPU, memory, concurrency); every function here is plain arithmetic, unit-tested with
hand-worked figures (tests/unit/test_cost_pricing.py).

Assumptions, also in docs/cost.md:
- request-based billing (Cloud Run's "CPU only allocated during request processing",
  what a Cloud Run function deploys with), Tier 1 prices, the free tier left out;
- an instance is billed while it serves at least one request, so with `concurrency`
  requests sharing it, one request's share of billed instance time is its latency over
  the concurrency, but never less than the CPU it used over the instance's vCPUs (an
  instance can't bill less time than its CPU was busy);
- Firestore operations per action are counted from the idempotency protocol
  (IDEMPOTENCY_OPS), each attempted call billed, the record's TTL delete included, and
  priced for a first request that posts;
- a ledger event is published once and pushed once (to automation), each request
  carrying one message, so each is billed at least Pub/Sub's 1,000-byte minimum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRICES_READ = "2026-11-30"
SOURCES = {
    "cloud_run": "https://cloud.google.com/run/pricing",
    "cloud_run_tiers": "https://cloud.google.com/functions/docs/locations",
    "firestore": "https://cloud.google.com/firestore/pricing",
    "pubsub": "https://cloud.google.com/pubsub/pricing",
}


@dataclass(frozen=True)
class Prices:
    vcpu_second: float  # USD per vCPU-second while an instance serves
    gib_second: float  # USD per GiB-second while an instance serves
    per_million_requests: float
    firestore_read_per_100k: float
    firestore_write_per_100k: float
    firestore_delete_per_100k: float
    pubsub_per_tib: float  # throughput: publish and delivery
    pubsub_min_bytes: int  # billed at least this per publish, push or pull request


# Cloud Run request-based billing, Tier 1 (us-central1, europe-west1, asia-northeast1,
# ...): $0.000024 per vCPU-second, $0.0000025 per GiB-second, $0.40 per million
# requests (free each month: 180,000 vCPU-seconds, 360,000 GiB-seconds, 2 million
# requests: left out). Firestore Standard edition, a regional US location: $0.03 per
# 100,000 document reads, $0.09 per 100,000 writes, $0.01 per 100,000 deletes (a
# multi-region costs twice). Pub/Sub: $40 per TiB past the first 10 GiB a month.
TIER_1 = Prices(
    vcpu_second=0.000024,
    gib_second=0.0000025,
    per_million_requests=0.40,
    firestore_read_per_100k=0.03,
    firestore_write_per_100k=0.09,
    firestore_delete_per_100k=0.01,
    pubsub_per_tib=40.0,
    pubsub_min_bytes=1000,
)

TIB = 2**40


@dataclass(frozen=True)
class FirestoreOps:
    reads: float = 0.0
    writes: float = 0.0
    deletes: float = 0.0


# The idempotency record of one money action (common/idempotency.py): a first request
# that posts only creates it (a write: the posting in Postgres is its outcome), and
# Firestore's TTL policy deletes it a day later (a billed delete); a business refusal
# also stores itself on it (a second write); a replay tries the create (refused,
# counted as billed) and reads the record. The unit tests check these against the
# protocol.
IDEMPOTENCY_OPS = {
    "first": FirestoreOps(writes=1, deletes=1),
    "refused": FirestoreOps(writes=2, deletes=1),
    "replay": FirestoreOps(reads=1, writes=1),
}


@dataclass(frozen=True)
class Deployed:
    """What Terraform gives one function's instances."""

    vcpu: float
    memory_gib: float
    concurrency: int


_MEMORY_UNITS = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1.0, "K": 1e3 / 2**30, "M": 1e6 / 2**30, "G": 1e9 / 2**30}


def memory_gib(text: str) -> float:
    """A Cloud Run memory setting ("512Mi", "1Gi", "2G") in GiB."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|K|M|G)", text.strip())
    if not match:
        raise ValueError(f"not a memory size: {text!r}")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def billed_seconds(latency_s: float, cpu_s: float, deployed: Deployed) -> float:
    """One request's share of billed instance time: its latency over the requests an
    instance serves at once, never less than its CPU time over the instance's vCPUs."""
    return max(latency_s / deployed.concurrency, cpu_s / deployed.vcpu)


def compute_per_million(billed_s: float, deployed: Deployed, prices: Prices = TIER_1) -> float:
    """Instance time (CPU and memory, both billed for the whole allocation) and the
    request fee, for a million requests."""
    per_request = billed_s * (deployed.vcpu * prices.vcpu_second + deployed.memory_gib * prices.gib_second)
    return per_request * 1e6 + prices.per_million_requests


def firestore_per_million(ops: FirestoreOps, prices: Prices = TIER_1) -> float:
    per_100k = (
        ops.reads * prices.firestore_read_per_100k
        + ops.writes * prices.firestore_write_per_100k
        + ops.deletes * prices.firestore_delete_per_100k
    )
    return per_100k * 10


def pubsub_message_bytes(data: bytes, attributes: dict[str, str], message_id_chars: int = 16) -> int:
    """A message's billed size as Pub/Sub counts it: body, every attribute's key and
    value, 20 bytes of timestamp, and the message id."""
    return len(data) + sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items()) + 20 + message_id_chars


def pubsub_per_million(message_bytes: int, requests_per_action: float, prices: Prices = TIER_1) -> float:
    """`requests_per_action` publish or push requests of one message each, every one
    billed at least the minimum."""
    billed = max(message_bytes, prices.pubsub_min_bytes) * requests_per_action
    return billed * 1e6 / TIB * prices.pubsub_per_tib


@dataclass(frozen=True)
class ActionCost:
    compute: float
    firestore: float
    pubsub: float

    @property
    def total(self) -> float:
        return self.compute + self.firestore + self.pubsub


def per_million_actions(
    latency_s: float,
    cpu_s: float,
    deployed: Deployed,
    ops: FirestoreOps,
    event_bytes: int,
    event_requests: float = 2.0,
    prices: Prices = TIER_1,
) -> ActionCost:
    """USD per million actions of one function, by what it pays for (Memorystore and
    Cloud SQL are fixed monthly costs: docs/cost.md)."""
    return ActionCost(
        compute=compute_per_million(billed_seconds(latency_s, cpu_s, deployed), deployed, prices),
        firestore=firestore_per_million(ops, prices),
        pubsub=pubsub_per_million(event_bytes, event_requests, prices) if event_bytes else 0.0,
    )
