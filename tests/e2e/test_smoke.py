"""`python -m infra.smoke` against the test stack, as a deployment runs it: a wallet of
its own, a top-up, its replay, two concurrent posts with one key, that key reused with
another amount, the balance read back, over HTTP with the local issuer's tokens (so the
check is known to work before it meets Google Cloud)."""

import secrets
import subprocess
import sys

from emulators.database import owner_connection, register_principal
from infra import smoke
from tests.support import bearer, ensure_asset, sql


def smoke_principal(stack) -> str:
    """One principal with what the deploy guide grants the smoke check's account."""
    principal_id = f"smoke-{secrets.token_hex(4)}"
    con = owner_connection(stack.owner_dsn())
    try:
        grants = [("payment_service", "all", None), ("back_office", "all", None)]
        register_principal(con, principal_id, stack.issuer, "service", principal_id, None, grants)
    finally:
        con.close()
    return principal_id


def test_the_smoke_check_posts_exactly_once(stack):
    asset = ensure_asset(stack, "SMOKE")
    principal_id = smoke_principal(stack)
    urls = {name: stack.function_url(name) for name in ("wallets", "topup")}
    said = []
    done = smoke.smoke(urls, lambda function: bearer(stack, principal_id), asset, 250, say=said.append)
    postings = sql(
        stack,
        "SELECT count(*) FROM ledger.entries WHERE wallet_id = :w",
        w=done["wallet_id"],
    )[0][0]
    assert postings == 2 and done["balance"] == 500
    assert any("nothing posted" in line for line in said)
    assert any("two top-ups at once" in line for line in said)
    assert any("idempotency_key_reused" in line for line in said)


def test_the_command_runs_against_a_local_stack(stack):
    principal_id = smoke_principal(stack)
    ensure_asset(stack, "SMOKE")
    result = subprocess.run(
        [sys.executable, "-m", "infra.smoke", "--profile", "test",
         "--admin-subject", principal_id, "--payer-subject", principal_id],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke check passed" in result.stdout


def test_a_top_up_that_is_not_replayed_fails_the_check(stack, monkeypatch):
    # what a broken client (or ledger) would do: each try a new key and reference
    failure = broken_smoke(stack, monkeypatch, lambda body, key: True)
    assert "replay the top-up" in failure


def broken_smoke(stack, monkeypatch, rekey):
    """The smoke check against a ledger that posts what `rekey(body, key)` says is a new
    request: the request is sent with a fresh key and reference, as if the key were lost."""
    principal_id = smoke_principal(stack)
    asset = ensure_asset(stack, "SMOKE")
    real_call = smoke.call

    def call(method, url, token, body=None, headers=None):
        if headers and rekey(body, headers["Idempotency-Key"]):
            fresh = secrets.token_hex(8)
            body, headers = dict(body, external_ref=fresh), {"Idempotency-Key": fresh}
        return real_call(method, url, token, body, headers)

    monkeypatch.setattr(smoke, "call", call)
    urls = {name: stack.function_url(name) for name in ("wallets", "topup")}
    try:
        smoke.smoke(urls, lambda function: bearer(stack, principal_id), asset, 5, say=lambda line: None)
    except smoke.SmokeFailed as failure:
        return str(failure)
    raise AssertionError("the smoke check passed a ledger that posts twice")


def test_two_concurrent_postings_under_one_key_fail_the_check(stack, monkeypatch):
    failure = broken_smoke(stack, monkeypatch, lambda body, key: key.endswith("-2") and body["amount"] == 5)
    assert failure.startswith("two concurrent top-ups with one key")


def test_a_reused_key_that_posts_fails_the_check(stack, monkeypatch):
    failure = broken_smoke(stack, monkeypatch, lambda body, key: body["amount"] != 5)
    assert failure.startswith("the same key with another amount")


def test_an_unregistered_principal_skips_the_check_only_when_asked(stack):
    ensure_asset(stack, "SMOKE")
    nobody = f"unregistered-{secrets.token_hex(4)}"
    command = [sys.executable, "-m", "infra.smoke", "--profile", "test", "--admin-subject", nobody,
               "--payer-subject", nobody]  # fmt: skip
    failed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert failed.returncode == 1 and "not registered" in failed.stderr, failed.stdout + failed.stderr
    skipped = subprocess.run([*command, "--skip-if-unregistered"], capture_output=True, text=True, check=False,
                             timeout=120)  # fmt: skip
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "smoke check skipped" in skipped.stdout
