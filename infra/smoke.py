"""`python -m infra.smoke`: proves a deployment moves money, exactly once.

Against the deployed functions (--env ENV: their URLs from `terraform output`, a token
for each minted by impersonating the operators' service account) or a local stack
(--profile dev|test: its URLs, tokens from its local issuer):

 1. opens a wallet of its own (owner smoke-<random>) through the wallets function;
 2. posts a top-up to it with a fresh Idempotency-Key (201);
 3. posts the same request again: the first answer is replayed (Idempotent-Replayed:
    true, the same transaction), and nothing more is posted;
 4. posts another top-up twice at once with one new key: exactly one posts, the other
    is its replay or a 409 request_in_progress;
 5. posts that key with a different amount: 422 idempotency_key_reused;
 6. reads the wallet back: its balance is the two top-ups, each counted once.

Every call carries the token twice, in Authorization and X-Serverless-Authorization
(docs/authentication-deployment.md). Exits 1 naming the step that failed. The smoke
principal needs the payment_service and back_office roles (docs/deploy.md, "First run");
until it is registered, --skip-if-unregistered (what `make deploy` passes) says so and
exits 0. Each run leaves its wallet, funded with 2 x --amount of the asset, behind: the
SMOKE asset is the smoke check's own, so its balances mean nothing else.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

TERRAFORM_DIR = Path(__file__).resolve().parent / "terraform"
TIMEOUT_S = 30.0


# What the functions answer (403) to a token whose subject is not a registered caller
# (common/auth/authenticate.py); tests/e2e/test_smoke.py holds the two together.
UNREGISTERED = "not a registered (or active) caller"


class SmokeFailed(Exception):
    pass


class NotRegistered(SmokeFailed):
    """The smoke check's principal is not a caller of the ledger yet."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def call(method: str, url: str, token: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "X-Serverless-Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            status, answer_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Answer(status, answer_headers, parsed)


def _expect(step: str, answer: Answer, status: int) -> Any:
    if answer.status != status:
        raise SmokeFailed(f"{step}: expected {status}, got {answer.status}: {answer.body}")
    return answer.body


def smoke(urls: dict[str, str], token_for: Callable[[str], str], asset: str, amount: int,
          say: Callable[[str], None] = click.echo) -> dict[str, Any]:  # fmt: skip
    """The four steps; returns what it did. `token_for(function)` gives a bearer token
    for that function (its URL is the audience in Google Cloud)."""
    wallets, topup = urls["wallets"].rstrip("/"), urls["topup"].rstrip("/")
    owner = f"smoke-{secrets.token_hex(6)}"
    opened = call("POST", f"{wallets}/wallets", token_for("wallets"), {"owner_id": owner, "asset": asset})
    if opened.status == 403 and UNREGISTERED in json.dumps(opened.body):
        raise NotRegistered("open a wallet: the smoke check's principal is not registered in the ledger yet")
    created = _expect("open a wallet", opened, 201)
    wallet_id = created["wallet"]["id"]
    say(f"opened wallet {wallet_id} ({owner}, {asset})")

    key = f"smoke-{secrets.token_hex(8)}"
    request = {"wallet_id": wallet_id, "asset": asset, "amount": amount, "external_ref": key}
    topup_token = token_for("topup")
    first = call("POST", topup, topup_token, request, {"Idempotency-Key": key})
    posted = _expect("top-up", first, 201)["transaction"]
    say(f"top-up of {amount} {asset}: transaction {posted['id']}")

    again = call("POST", topup, topup_token, request, {"Idempotency-Key": key})
    replayed = _expect("replay the top-up", again, 201)["transaction"]
    replay_header = _header(again, "idempotent-replayed")
    if replay_header != "true" or replayed["id"] != posted["id"]:
        raise SmokeFailed(
            f"replay the top-up: expected the first answer replayed, got transaction {replayed['id']}"
            f" with Idempotent-Replayed: {replay_header}"
        )
    say(f"replayed with the same Idempotency-Key: transaction {replayed['id']} again, nothing posted")

    second = _concurrent_posts(topup, topup_token, dict(request, external_ref=f"{key}-2"), f"{key}-2", say)
    _reused_key(topup, topup_token, dict(request, external_ref=f"{key}-2", amount=amount + 1), f"{key}-2", say)

    expected = 2 * amount
    balance = _expect("read the balance", call("GET", f"{wallets}/wallets/{wallet_id}", token_for("wallets")), 200)
    if balance["wallet"]["balance"] != expected:
        raise SmokeFailed(f"read the balance: expected {expected}, got {balance['wallet']['balance']}")
    say(f"wallet {wallet_id} balance {expected}: each top-up exactly once")
    return {"wallet_id": wallet_id, "transaction_ids": [posted["id"], second], "balance": expected}


def _concurrent_posts(topup: str, token: str, request: dict[str, Any], key: str, say: Callable[[str], None]) -> str:
    """The same request twice at once: one posting; the other its replay, or a 409 while
    the first holds the key. Returns the posting's transaction id."""
    step = "two concurrent top-ups with one key"
    together = threading.Barrier(2)

    def post(_: int) -> Answer:
        together.wait()
        return call("POST", topup, token, request, {"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(post, range(2)))
    posted = [a for a in answers if a.status == 201 and _header(a, "idempotent-replayed") != "true"]
    replayed = [a for a in answers if a.status == 201 and _header(a, "idempotent-replayed") == "true"]
    waiting = [a for a in answers if a.status == 409 and _error_code(a) == "request_in_progress"]
    if len(posted) != 1 or len(replayed) + len(waiting) != 1:
        raise SmokeFailed(
            f"{step}: expected one posting and one replay or 409, got {[(a.status, a.body) for a in answers]}"
        )
    transaction_id = posted[0].body["transaction"]["id"]
    if replayed and replayed[0].body["transaction"]["id"] != transaction_id:
        raise SmokeFailed(f"{step}: the replay names transaction {replayed[0].body['transaction']['id']}")
    other = "its replay" if replayed else "409 request_in_progress"
    say(f"two top-ups at once with one Idempotency-Key: transaction {transaction_id} and {other}")
    return str(transaction_id)


def _reused_key(topup: str, token: str, request: dict[str, Any], key: str, say: Callable[[str], None]) -> None:
    step = "the same key with another amount"
    answer = call("POST", topup, token, request, {"Idempotency-Key": key})
    if answer.status != 422 or _error_code(answer) != "idempotency_key_reused":
        raise SmokeFailed(f"{step}: expected 422 idempotency_key_reused, got {answer.status}: {answer.body}")
    say("the same Idempotency-Key with another amount: refused (idempotency_key_reused), nothing posted")


def _header(answer: Answer, name: str) -> str | None:
    return {key.lower(): value for key, value in answer.headers.items()}.get(name)


def _error_code(answer: Answer) -> str | None:
    body = answer.body
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


# Where the functions are, and the tokens --------------------------------------------


def _terraform_output(name: str) -> Any:
    raw = subprocess.run(
        ["terraform", "output", "-json", name], cwd=TERRAFORM_DIR, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(raw)


def google_cloud(env_name: str, impersonate: str | None) -> tuple[dict[str, str], Callable[[str], str]]:
    """ENV's deployed functions' URLs (from its Terraform state) and an ID token for each,
    minted as the operators' service account (the one invoker of every function): the
    deploying person needs roles/iam.serviceAccountTokenCreator on it
    (var.caller_token_creators)."""
    subprocess.run(
        ["terraform", "init", "-reconfigure", "-input=false", f"-backend-config=envs/{env_name}.gcs.tfbackend"],
        cwd=TERRAFORM_DIR, capture_output=True, check=True,
    )  # fmt: skip
    urls = _terraform_output("function_urls")
    account = impersonate or _terraform_output("caller_service_accounts")["operators"]["email"]

    def token_for(function: str) -> str:
        return subprocess.run(
            ["gcloud", "auth", "print-identity-token", f"--impersonate-service-account={account}",
             f"--audiences={urls[function]}", "--include-email"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    return urls, token_for


def local_stack(profile: str, subjects: dict[str, str]) -> tuple[dict[str, str], Callable[[str], str]]:
    """A local stack's functions, and tokens from its issuer (python -m emulators token)."""
    from emulators.stack import Stack

    stack = Stack(profile)
    urls = {name: stack.function_url(name) for name in ("wallets", "topup")}

    def token_for(function: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "emulators", "--profile", profile, "token", subjects[function]],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    return urls, token_for


@click.command()
@click.option(
    "--env", "env_name", default=None, help="A deployed environment (Terraform's state for it is initialised)."
)
@click.option("--impersonate", default=None, help="The service account to mint tokens as [default: the operators'].")
@click.option("--profile", type=click.Choice(["dev", "test"]), default=None, help="A local stack instead.")
@click.option("--admin-subject", default="backoffice", show_default=True, help="Local: who opens and reads the wallet.")
@click.option("--payer-subject", default="payments", show_default=True, help="Local: who posts the top-up.")
@click.option("--asset", default="SMOKE", show_default=True, help="An existing asset (docs/deploy.md, First run).")
@click.option("--amount", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--skip-if-unregistered", is_flag=True,
              help="Pass, saying so, while the principal is not a caller yet (a first deploy).")  # fmt: skip
def main(env_name: str | None, impersonate: str | None, profile: str | None, admin_subject: str, payer_subject: str,
         asset: str, amount: int, skip_if_unregistered: bool) -> None:  # fmt: skip
    """Post a top-up against the deployed (or local) functions, replay it, read it back."""
    if (env_name is None) == (profile is None):
        raise click.UsageError("give --env ENV (Google Cloud) or --profile dev|test (a local stack)")
    if profile is not None:
        urls, token_for = local_stack(profile, {"wallets": admin_subject, "topup": payer_subject})
    else:
        urls, token_for = google_cloud(env_name, impersonate)
    try:
        smoke(urls, token_for, asset, amount)
    except NotRegistered as failure:
        if not skip_if_unregistered:
            raise click.ClickException(f"smoke check failed at {failure}") from None
        click.echo(f"smoke check skipped: {failure}; register it (docs/deploy.md, First run), then make smoke")
        return
    except SmokeFailed as failure:
        raise click.ClickException(f"smoke check failed at {failure}") from None
    click.echo("smoke check passed")


if __name__ == "__main__":
    main()
