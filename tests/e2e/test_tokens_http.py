"""Bearer tokens over HTTP, against the stack's own issuer (issue 13): every credential
that does not verify gets 401 with a WWW-Authenticate challenge and writes nothing; a
verified token whose subject the ledger doesn't know, or has disabled, gets 403. And
no token, nor any part of its signature, is ever written to a log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import pytest
import requests

from common.errors import Forbidden, Unauthenticated
from emulators import issuer
from emulators.stack import FUNCTIONS
from infra.functions import http_functions
from tests.e2e.footprint import Footprint, idempotency_records
from tests.support import _tokens, ensure_asset, key, new_wallet, principal, sql

SUBJECT = "t-payments"  # a payment service: may top up any wallet
TENANT = "t-payments"
CHALLENGE = 'Bearer realm="wallet-ledger"'
sent: list[str] = []  # every credential this module sends, for the log check at its end


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def claims(stack, subject: str = SUBJECT) -> dict:
    now = int(time.time())
    return {"iss": stack.issuer, "sub": subject, "aud": issuer.AUDIENCE, "iat": now, "exp": now + 3600}


def other_key(tmp_path_factory) -> object:
    return issuer.ensure_key(tmp_path_factory.mktemp("another-issuer"))


def unsigned(stack) -> str:
    """alg none: a header and payload, and an empty signature."""
    header = {"alg": "none", "typ": "JWT", "kid": issuer.key_id(stack.issuer_key)}
    return f"{b64(json.dumps(header))}.{b64(json.dumps(claims(stack)))}."


def hmac_with_public_key(stack) -> str:
    """HS256 keyed with the issuer's public key: the classic algorithm confusion."""
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.key_id(stack.issuer_key)}
    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(claims(stack)))}"
    secret = next(iter(issuer.certs(stack.issuer_key).values())).encode()
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def tampered_payload(stack) -> str:
    """A valid token's signature over another payload: here, someone else's subject."""
    token = stack.token(SUBJECT)
    header, _, signature = token.split(".")
    forged = {**segments(token)[1], "sub": "t-operator"}
    return f"{header}.{b64(json.dumps(forged))}.{signature}"


def tampered_signature(stack) -> str:
    header, payload, signature = stack.token(SUBJECT).split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    return f"{header}.{payload}.{flipped}"


def mint(stack, **kwargs) -> str:
    return issuer.mint(stack.issuer_key, stack.issuer, SUBJECT, **kwargs)


# name: (the Authorization header or None for none, whether a token was sent)
BAD_CREDENTIALS = {
    "no header": lambda stack, tmp: (None, False),
    "basic": lambda stack, tmp: ("Basic dDpwYXltZW50czpodW50ZXIy", False),
    "bearer without a token": lambda stack, tmp: ("Bearer ", False),
    "expired": lambda stack, tmp: (mint(stack, now=time.time() - 7200, lifetime_s=3600), True),
    "expired just beyond the clock skew": lambda stack, tmp: (mint(stack, now=time.time() - 120, lifetime_s=60), True),
    "issued in the future": lambda stack, tmp: (mint(stack, now=time.time() + 3600), True),
    "wrong audience": lambda stack, tmp: (mint(stack, audience="https://someone-else.example"), True),
    "wrong issuer": lambda stack, tmp: (
        issuer.mint(stack.issuer_key, "https://issuer.example", SUBJECT),
        True,
    ),
    "another key claiming our issuer": lambda stack, tmp: (
        issuer.mint(other_key(tmp), stack.issuer, SUBJECT),
        True,
    ),
    "another key under our key id": lambda stack, tmp: (
        issuer.mint(other_key(tmp), stack.issuer, SUBJECT, kid=issuer.key_id(stack.issuer_key)),
        True,
    ),
    "alg none": lambda stack, tmp: (unsigned(stack), True),
    "alg HS256 keyed with the public key": lambda stack, tmp: (hmac_with_public_key(stack), True),
    "tampered payload": lambda stack, tmp: (tampered_payload(stack), True),
    "tampered signature": lambda stack, tmp: (tampered_signature(stack), True),
    "key id missing from the JWKS": lambda stack, tmp: (mint(stack, kid="unknown"), True),
    "no subject": lambda stack, tmp: (mint(stack, claims={"sub": ""}), True),
    "garbage": lambda stack, tmp: ("garbage", True),
    "three garbage segments": lambda stack, tmp: ("eyJhbGciOi.J9eyJzdWIi.OiJ4In0", True),
}


def send(stack, authorization: str | None, function: str, method: str, path: str, body=None, idempotency_key=None):
    if authorization is not None:
        sent.append(authorization)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization if " " in authorization else f"Bearer {authorization}"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    data = None if body is None else json.dumps(body)
    return requests.request(method, stack.function_url(function) + path, data=data, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def setup(stack):
    ensure_asset(stack)
    token = principal(stack, SUBJECT, "payment_service", "all", tenant=TENANT)
    footprint = Footprint(stack)
    yield token, new_wallet(stack, funded=100), footprint
    footprint.close()


def calls(wallet: int):
    return [
        ("topup", "POST", "/", {"wallet_id": wallet, "asset": "TST", "amount": 7, "external_ref": key("t")}),
        ("wallets", "GET", f"/wallets/{wallet}", None),
    ]


@pytest.mark.parametrize("name", list(BAD_CREDENTIALS))
def test_a_credential_that_does_not_verify_gets_401_and_writes_nothing(stack, setup, tmp_path_factory, name):
    _, wallet, footprint = setup
    authorization, token_sent = BAD_CREDENTIALS[name](stack, tmp_path_factory)
    for function, method, path, body in calls(wallet):
        k = key("t-bad")
        before = footprint.rows()
        response = send(stack, authorization, function, method, path, body, k if method == "POST" else None)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthenticated"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(CHALLENGE)
        assert ('error="invalid_token"' in challenge) == token_sent
        secret = (authorization or "").split(" ")[-1]
        if secret:  # the answer never repeats the credential
            assert secret not in response.text and secret not in challenge
        assert footprint.rows() == before
        assert idempotency_records(["", TENANT, "tester"], k) == []


def test_the_same_token_unchanged_is_accepted(stack, setup):
    """The control for the cases above: the principal and the request are fine."""
    token, wallet, _ = setup
    k = key("t-good")
    response = send(stack, token, "topup", "POST", "/", calls(wallet)[0][3], k)
    assert response.status_code == 201, response.text
    assert idempotency_records(["", TENANT], k) == [TENANT]


def test_every_http_function_wants_a_token(stack, setup):
    _, wallet, footprint = setup
    before = footprint.rows()
    for function in http_functions(FUNCTIONS):
        response = send(stack, None, function, "POST", "/", {})
        assert response.status_code == 401, (function, response.text)
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert footprint.rows() == before


def test_a_verified_token_of_an_unknown_subject_gets_403(stack, setup):
    _, wallet, footprint = setup
    token = issuer.mint(stack.issuer_key, stack.issuer, "t-nobody-we-know")
    for function, method, path, body in calls(wallet):
        k = key("t-unknown")
        before = footprint.rows()
        response = send(stack, token, function, method, path, body, k if method == "POST" else None)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden", response.text
        assert "WWW-Authenticate" not in response.headers
        assert footprint.rows() == before
        assert idempotency_records(["", "t-nobody-we-know", TENANT], k) == []


def ttl_s() -> float:
    from common.config import get_settings

    return get_settings().auth_principal_ttl_s


def test_a_disabled_principal_or_a_revoked_grant_gets_403_once_the_cache_lets_go(stack, setup):
    _, wallet, footprint = setup
    token = principal(stack, "t-revocable", "payment_service", "all", tenant="t-revocable")
    topup = calls(wallet)[0]
    assert ttl_s() <= 2, "the test stack caches principals briefly (emulators/stack.py)"

    def attempt(expected: int) -> None:
        k = key("t-revocable")
        before = footprint.rows()
        response = send(stack, token, *topup, idempotency_key=k)
        assert response.status_code == expected, response.text
        if expected == 403:
            assert footprint.rows() == before and idempotency_records(["", "t-revocable"], k) == []

    attempt(201)
    sql(stack, "UPDATE ledger.principals SET status = 'disabled' WHERE id = 't-revocable'")
    time.sleep(ttl_s() + 0.5)
    attempt(403)
    sql(stack, "UPDATE ledger.principals SET status = 'active' WHERE id = 't-revocable'")
    time.sleep(ttl_s() + 0.5)
    attempt(201)
    sql(stack, "UPDATE ledger.grants SET status = 'revoked' WHERE principal_id = 't-revocable'")
    time.sleep(ttl_s() + 0.5)
    attempt(403)


# Tokens and secrets in logs -------------------------------------------------------


FRAGMENT, STEP = 12, 4  # a leak of any 15 characters in a row of a signature contains a fragment


def fragments(credential: str) -> list[str]:
    """A credential whole and, for a JWT, its signature in overlapping pieces: a log line
    that kept only part of the token (its tail, say) is a leak too."""
    token = credential.split(" ")[-1]
    signature = token.split(".")[-1] if token.count(".") == 2 else ""
    pieces = [signature[i : i + FRAGMENT] for i in range(0, len(signature) - FRAGMENT + 1, STEP)]
    return [token, *pieces] if len(token) >= FRAGMENT else pieces


def secrets_of(stack) -> dict[str, str]:
    """What must never be logged: every credential sent here or by the other tests, and
    the issuer's private key; by what to call it in a failure."""
    found = {}
    for credential in {*sent, *_tokens.values()}:
        for number, fragment in enumerate(fragments(credential)):
            found[fragment] = f"{credential[:20]}... (fragment {number})"
    pem = stack.issuer_key.read_text().splitlines()
    for number, line in enumerate(pem[1:-1]):
        found[line] = f"the issuer's private key, line {number + 1}"
    return found


def test_no_token_or_secret_reaches_the_functions_logs(stack, setup):
    token, wallet, _ = setup
    # a request of each kind again, so their log lines are there to read
    send(stack, token, "wallets", "GET", f"/wallets/{wallet}")
    send(stack, tampered_signature(stack), "wallets", "GET", f"/wallets/{wallet}")
    send(stack, "garbage-" + "x" * 40, "topup", "POST", "/", {}, key())
    send(stack, mint(stack, kid="unknown"), "topup", "POST", "/", {}, key())
    logs = {path.name: path.read_text(errors="replace") for path in sorted(stack.state_dir.glob("*.log"))}
    assert {f"{name}.log" for name in http_functions(FUNCTIONS)} <= set(logs)
    assert any('"principal": "t-payments"' in text for text in logs.values()), "the request lines are logged"
    leaks = [
        (name, what) for secret, what in secrets_of(stack).items() for name, text in logs.items() if secret in text
    ]
    assert not leaks


def test_the_authenticator_logs_no_token_in_process(stack, setup, caplog):
    """The same code in this process, every logger at DEBUG (google-auth's and urllib3's
    included): neither a refusal, nor the error it raises, nor the request line that
    the HTTP edge logs carries any part of the token."""
    import flask

    from common import bootstrap
    from common.http import endpoint, json_response

    authenticator = bootstrap.authenticator()
    bad = [tampered_signature(stack), mint(stack, kid="unknown"), mint(stack, audience="x"), "garbage-" + "y" * 40]
    stranger = issuer.mint(stack.issuer_key, stack.issuer, "t-stranger")
    sent.extend([*bad, stranger])
    caplog.set_level(logging.DEBUG)
    handler = endpoint(lambda request, caller: json_response(200, {}))
    app = flask.Flask("tokens-in-logs")
    for token in [*bad, stranger]:
        expected = Forbidden if token == stranger else Unauthenticated
        with pytest.raises(expected) as refused:
            authenticator.caller(f"Bearer {token}", "t-request")
        with app.test_request_context("/", method="POST", headers={"Authorization": f"Bearer {token}"}):
            assert handler(flask.request).status_code == (403 if token == stranger else 401)
        rendered = json.dumps(refused.value.body()) + str(refused.value) + repr(refused.value)
        logged = "\n".join(repr(vars(record)) for record in caplog.records)
        assert any(record.getMessage() == "request" for record in caplog.records), "the request line was heard"
        for fragment in fragments(token):
            assert fragment not in rendered and fragment not in logged
