"""Token settings, the certs cache and the authenticator's cache (the token edge cases
themselves run against the stack's real issuer: tests/e2e/test_tokens_http.py; here,
what needs a certs endpoint that serves canned answers or a clock to move)."""

import json
import logging
import time
from types import SimpleNamespace

import pytest

from common.auth.authenticate import Authenticator
from common.auth.callers import Principal
from common.auth.tokens import (
    REFETCH_UNKNOWN_KEY_AFTER_S,
    CachedCerts,
    TokenVerifier,
    TrustedIssuer,
    _max_age,
    parse_issuers,
    refuse_local_issuers_in_cloud,
)
from common.errors import DependencyUnavailable, Forbidden, Unauthenticated
from emulators import issuer

GOOGLE = (
    '{"issuer": "https://accounts.google.com", "certs_url": "https://www.googleapis.com/oauth2/v1/certs",'
    ' "audiences": ["https://topup"]}'
)
LOCAL = '{"issuer": "http://127.0.0.1:54405", "certs_url": "http://127.0.0.1:54405/certs", "audiences": ["local"]}'


def test_nothing_configured_trusts_no_issuer():
    assert parse_issuers("") == {}


def test_a_malformed_setting_stops_the_function():
    for raw in ("{", '[{"issuer": "x"}]', '[{"issuer": "x", "certs_url": "y", "audiences": []}]'):
        with pytest.raises(ValueError):
            parse_issuers(raw)


def test_the_local_issuer_is_refused_in_google_cloud_and_google_is_not():
    issuers = parse_issuers(f"[{GOOGLE}, {LOCAL}]")
    refuse_local_issuers_in_cloud(issuers, environ={})  # locally: fine
    with pytest.raises(RuntimeError, match="local"):
        refuse_local_issuers_in_cloud(issuers, environ={"K_SERVICE": "topup"})
    refuse_local_issuers_in_cloud(parse_issuers(f"[{GOOGLE}]"), environ={"K_SERVICE": "topup"})


def test_an_https_issuer_on_loopback_is_local_too():
    issuers = parse_issuers('[{"issuer": "https://localhost", "certs_url": "https://localhost/c", "audiences": ["a"]}]')
    with pytest.raises(RuntimeError):
        refuse_local_issuers_in_cloud(issuers, environ={"K_SERVICE": "usage"})


def test_certs_are_kept_for_their_max_age():
    assert _max_age({"cache-control": "public, max-age=19845, must-revalidate"}) == 19845
    assert _max_age({}) == 300


class StubVerifier:
    def verify(self, token):
        if token != "good":
            raise Unauthenticated("bad")
        return {"iss": "iss", "sub": "sub"}


def test_the_header_must_be_a_bearer_token():
    auth = Authenticator(StubVerifier(), lambda i, s: None, ttl_s=30)
    for header in (None, "", "Basic abc", "Bearer ", "Bearer"):
        with pytest.raises(Unauthenticated) as refused:
            auth.caller(header, "r")
        assert refused.value.token_sent is False
    with pytest.raises(Unauthenticated) as refused:
        auth.caller("Bearer nope", "r")
    assert refused.value.token_sent is True  # a bad token learns why (RFC 6750's invalid_token)


def test_principals_are_cached_for_the_ttl_and_an_unknown_one_is_403():
    now = [0.0]
    looked_up = []
    known = {"sub": Principal("p", "iss", "sub", "service", "t")}

    def principals(issuer, subject):
        looked_up.append(subject)
        return known.get(subject)

    auth = Authenticator(StubVerifier(), principals, ttl_s=30, clock=lambda: now[0])
    assert auth.caller("Bearer good", "r1").principal.id == "p"
    assert auth.caller("bearer good", "r2").request_id == "r2"
    assert looked_up == ["sub"]
    known.clear()  # disabled meanwhile: noticed once the cache entry is older than the TTL
    now[0] = 31
    with pytest.raises(Forbidden):
        auth.caller("Bearer good", "r3")


ISSUER = "https://issuer.example"
CERTS_URL = "https://issuer.example/certs"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two signing keys: the issuer's current one and the one it rotates to."""
    return [issuer.ensure_key(tmp_path_factory.mktemp(name)) for name in ("current", "next")]


class CertsEndpoint:
    """The issuer's certs URL: serves `body` (changeable, for a rotation) and counts fetches."""

    def __init__(self, body):
        self.body = body
        self.fetches = 0

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None):
        assert url == CERTS_URL
        self.fetches += 1
        return SimpleNamespace(
            status=200, headers={"cache-control": "max-age=3600"}, data=json.dumps(self.body).encode()
        )


def verifier(endpoint, now):
    certs = CachedCerts(1.0, inner=endpoint, clock=lambda: now[0])
    return TokenVerifier({ISSUER: TrustedIssuer(ISSUER, CERTS_URL, ("aud",))}, 30, 1.0, certs)


def token(key_path, header=None, kid=None):
    """A token the issuer signed with `key_path`; `header` replaces the signer's key id."""
    from google.auth import crypt, jwt

    now = int(time.time())
    payload = {"iss": ISSUER, "sub": "s", "aud": "aud", "iat": now, "exp": now + 600}
    if header is None:
        return issuer.mint(key_path, ISSUER, "s", "aud", kid=kid)
    return jwt.encode(crypt.RSASigner.from_string(key_path.read_text()), payload, header=header).decode()


@pytest.mark.parametrize("kid", [["a"], {"a": 1}, 7])
def test_a_key_id_that_is_not_a_string_is_a_401_before_and_after_the_certs_are_cached(keys, kid):
    endpoint, now = CertsEndpoint(issuer.certs(keys[0])), [0.0]
    tokens = verifier(endpoint, now)
    bad = token(keys[0], header={"kid": kid})
    with pytest.raises(Unauthenticated):
        tokens.verify(bad)
    assert tokens.verify(token(keys[0]))["sub"] == "s"  # the certs are cached now
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(bad)
    assert refused.value.token_sent is True


def test_a_certs_url_that_serves_a_jwks_is_a_misconfigured_issuer_logged_once(keys, caplog):
    endpoint, now = CertsEndpoint(issuer.jwks(keys[0])), [0.0]
    tokens = verifier(endpoint, now)
    with caplog.at_level(logging.ERROR, logger="ledger.auth"):
        for _ in range(3):
            with pytest.raises(DependencyUnavailable) as refused:
                tokens.verify(token(keys[0]))
            assert refused.value.status == 503 and refused.value.code == "issuer_unavailable"
    logged = [r for r in caplog.records if r.name == "ledger.auth"]
    assert len(logged) == 1 and logged[0].certs_url == CERTS_URL
    assert endpoint.fetches == 1  # kept for its max-age like a good answer: no fetch per request


@pytest.mark.parametrize("body", [["not", "a", "map"], {"kid": {"n": "..."}}, "pem"])
def test_any_other_answer_than_googles_format_is_misconfigured_too(keys, body):
    with pytest.raises(DependencyUnavailable):
        verifier(CertsEndpoint(body), [0.0]).verify(token(keys[0]))


def test_an_unknown_key_id_refetches_the_certs_at_most_every_so_often(keys):
    """A rotation is picked up within REFETCH_UNKNOWN_KEY_AFTER_S of the fetch before it;
    a flood of made-up key ids costs one fetch per such interval, not one per token."""
    endpoint, now = CertsEndpoint(issuer.certs(keys[0])), [0.0]
    tokens = verifier(endpoint, now)
    tokens.verify(token(keys[0]))
    assert endpoint.fetches == 1
    made_up = token(keys[0], kid="made-up")
    for at in (1.0, 5.0, REFETCH_UNKNOWN_KEY_AFTER_S - 1):
        now[0] = at
        with pytest.raises(Unauthenticated, match="unknown signing key"):
            tokens.verify(made_up)
    assert endpoint.fetches == 1
    now[0] = REFETCH_UNKNOWN_KEY_AFTER_S
    with pytest.raises(Unauthenticated):
        tokens.verify(made_up)
    assert endpoint.fetches == 2

    # the issuer rotates: a token under the new key waits for the next allowed refetch
    endpoint.body = {**issuer.certs(keys[0]), **issuer.certs(keys[1])}
    rotated = token(keys[1])
    now[0] = REFETCH_UNKNOWN_KEY_AFTER_S + 10
    with pytest.raises(Unauthenticated):
        tokens.verify(rotated)
    assert endpoint.fetches == 2
    now[0] = 2 * REFETCH_UNKNOWN_KEY_AFTER_S
    assert tokens.verify(rotated)["sub"] == "s"
    assert endpoint.fetches == 3
    tokens.verify(token(keys[0]))  # a known key id never refetches
    assert endpoint.fetches == 3
