"""`python -m bench.callers`: what knowing the caller costs each request.

Every HTTP request now verifies a bearer token, finds its principal, may look up the
facts a tenant boundary is judged on, and spends from its rate limit in Redis. This
measures each step on its own, in process against the running stack, and then whole
requests over HTTP: a read by a caller with an unbounded grant (no boundary lookup),
by one bounded to its own wallets, and one refused for having no token (the edge's
floor). Writes bench/results/callers.md.

Run it against the dev stack (`make bench-callers` starts it).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import requests

from emulators.database import owner_connection, register_principal
from emulators.stack import Stack

RESULT = Path(__file__).resolve().parent / "results" / "callers.md"


def _stats(samples_us: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_us)
    return (
        statistics.median(ordered),
        ordered[int(len(ordered) * 0.95) - 1],
        ordered[int(len(ordered) * 0.99) - 1],
    )


def _time(action: Callable[[], object], n: int) -> list[float]:
    action()  # warm: connections, caches, prepared statements
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _setup(stack: Stack) -> tuple[int, str, str]:
    """A wallet owned by a bounded caller, that caller and an unbounded one; their tokens."""
    owner = f"bench-callers-{uuid.uuid4().hex[:8]}"
    con = owner_connection(stack.owner_dsn())
    try:
        if not con.run("SELECT 1 FROM ledger.assets WHERE code = 'BCH'"):
            con.run("SELECT ledger.create_asset('BCH', CAST(0 AS smallint), 'bench')")
        wallet = con.run("INSERT INTO ledger.wallets (owner_id, asset_code) VALUES (:o, 'BCH') RETURNING id", o=owner)[
            0
        ][0]
        register_principal(
            con, "bench-callers-service", stack.issuer, "service", "bench", None, [("operator", "all", None)]
        )
        register_principal(con, owner, stack.issuer, "user", owner, owner, [("customer", "own", None)])
        unlimited = '{"read": {"per_second": 1000000, "burst": 1000000}}'
        con.run(
            "UPDATE ledger.principals SET rate_limits = CAST(:l AS jsonb) WHERE id IN ('bench-callers-service', :o)",
            l=unlimited,
            o=owner,
        )
    finally:
        con.close()
    return wallet, stack.token("bench-callers-service"), stack.token(owner)


@click.command()
@click.option("--profile", default="dev", show_default=True)
@click.option("--n", default=2000, show_default=True, help="Samples per in-process row.")
@click.option("--requests-per-row", "http_n", default=1000, show_default=True, help="HTTP requests per row.")
def main(profile: str, n: int, http_n: int) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())  # before common/ reads its settings
    from common import bootstrap
    from common.adapters.access_store import AccessStore
    from common.auth.tokens import TokenVerifier, parse_issuers
    from common.config import get_settings
    from common.rate_limits import Bucket, Rate

    wallet, service_token, customer_token = _setup(stack)
    settings = get_settings()
    verifier = TokenVerifier(parse_issuers(settings.auth_issuers), settings.auth_clock_skew_s, 5.0)
    claims = verifier.verify(customer_token)
    authenticator = bootstrap.authenticator()
    limiter = bootstrap.rate_limiter()

    def uncached_facts() -> object:
        return AccessStore(bootstrap.pool()).wallet_facts([wallet])

    cached = AccessStore(bootstrap.pool())
    steps = [
        (
            "verify the token (signature, issuer, audience, expiry; keys cached)",
            lambda: verifier.verify(customer_token),
        ),
        (
            "find the principal and its grants in Postgres (ledger.caller)",
            lambda: bootstrap.access_store().principal(claims["iss"], claims["sub"]),
        ),
        (
            "authenticate a request: verify, principal from the instance cache",
            lambda: authenticator.caller(f"Bearer {customer_token}", "r"),
        ),
        ("a wallet's boundary facts from Postgres (first sight)", uncached_facts),
        ("a wallet's boundary facts from the instance cache", lambda: cached.wallet_facts([wallet])),
        (
            "spend from the rate limit (one Redis script call)",
            lambda: limiter.check(Bucket("bench", "read"), Rate(1e6, 1_000_000)),
        ),
    ]
    click.echo("  in process ...", err=True)
    step_rows = [(label, *_stats(_time(action, n))) for label, action in steps]

    session = requests.Session()
    url = f"{stack.function_url('wallets')}/wallets/{wallet}"

    def get(token: str | None) -> Callable[[], object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        def call() -> object:
            response = session.get(url, headers=headers, timeout=30)
            assert response.status_code == (200 if token else 401), response.text
            return response

        return call

    click.echo("  over HTTP ...", err=True)
    http_rows = [
        ("GET a wallet, unbounded caller (an operator)", *_stats(_time(get(service_token), http_n))),
        ("GET a wallet, caller bounded to its own wallets", *_stats(_time(get(customer_token), http_n))),
        ("no token: the 401 (the edge's floor)", *_stats(_time(get(None), http_n))),
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cores"
    lines = [
        "# What knowing the caller costs",
        "",
        f"{when}; {machine}, Python {platform.python_version()}; `python -m bench.callers --n {n} "
        f"--requests-per-row {http_n}` against the {profile} stack (local Postgres, Redis, issuer), one client, "
        "requests one after another.",
        "",
        "## Each step, in process",
        "",
        "| step | p50 µs | p95 µs | p99 µs |",
        "|---|---:|---:|---:|",
        *[f"| {label} | {p50:.0f} | {p95:.0f} | {p99:.0f} |" for label, p50, p95, p99 in step_rows],
        "",
        "## Whole requests over HTTP",
        "",
        "| request | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|",
        *[
            f"| {label} | {p50 / 1000:.2f} | {p95 / 1000:.2f} | {p99 / 1000:.2f} |"
            for label, p50, p95, p99 in http_rows
        ],
        "",
    ]
    text = "\n".join(lines)
    RESULT.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
