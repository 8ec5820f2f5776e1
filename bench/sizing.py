"""Cloud SQL sizing from measured database CPU per posting.

vCPUs = postings/s x CPU seconds per posting / target utilisation, rounded up to the
next machine size Cloud SQL offers. One CPU second of this machine's Postgres is
taken as one vCPU second (a vCPU is one hyperthread; the method is in
docs/infrastructure.md, "Sizing Cloud SQL from measured CPU per posting")."""

from __future__ import annotations

import math

RATES = (70, 700, 7_000)
TARGET_UTILISATION = 0.6
# The largest Cloud SQL for PostgreSQL Enterprise Plus machine: 128 vCPUs (N2 or C4A,
# 864 GB), per Google's Cloud SQL core concepts (github.com/google/skills,
# skills/cloud/cloud-sql-basics/references/core-concepts.md), read 2026-11-30.
MAX_ENTERPRISE_PLUS_VCPUS = 128
# vCPU counts of Enterprise Plus performance-optimised machines (db-perf-optimized-N-*).
SIZES = (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)


def vcpus(cpu_ms_per_posting: float, postings_per_s: float, utilisation: float = TARGET_UTILISATION) -> float:
    """vCPUs the database needs so that it runs at `utilisation` at `postings_per_s`."""
    return postings_per_s * cpu_ms_per_posting / 1000 / utilisation


def machine(needed: float) -> int | None:
    """The smallest machine size at least `needed` vCPUs, or None beyond one primary."""
    return next((size for size in SIZES if size >= needed), None)


def ceiling(cpu_ms_per_posting: float, utilisation: float = TARGET_UTILISATION) -> float:
    """Postings/s at which the largest primary reaches `utilisation`."""
    return MAX_ENTERPRISE_PLUS_VCPUS * utilisation * 1000 / cpu_ms_per_posting if cpu_ms_per_posting else math.inf


def table(cpu_ms_per_posting: dict[str, float], utilisation: float = TARGET_UTILISATION) -> str:
    """Per contender: vCPUs needed at each rate, the machine that covers them, and where
    one Enterprise Plus primary tops out."""
    head = " | ".join(f"{rate:,}/s: vCPUs (machine)" for rate in RATES)
    rows = [
        f"| posting path | DB CPU ms per posting | {head} | one primary tops out at |",
        "|---|---:|" + "---:|" * len(RATES) + "---:|",
    ]
    for label, cpu_ms in cpu_ms_per_posting.items():
        cells = []
        for rate in RATES:
            needed = vcpus(cpu_ms, rate, utilisation)
            size = machine(needed)
            cells.append(f"{needed:.1f} ({size if size else 'more than one primary'})")
        rows.append(f"| {label} | {cpu_ms:.3f} | {' | '.join(cells)} | {ceiling(cpu_ms, utilisation):,.0f}/s |")
    rows.append(
        f"\nAt {utilisation:.0%} target utilisation; the largest Enterprise Plus primary has"
        f" {MAX_ENTERPRISE_PLUS_VCPUS} vCPUs; one local CPU second counted as one vCPU second."
    )
    return "\n".join(rows)
