"""Token settings and the authenticator's cache (the token edge cases themselves run
against the stack's real issuer: tests/e2e/test_tokens_http.py)."""

import pytest

from common.auth.authenticate import Authenticator
from common.auth.callers import Principal
from common.auth.tokens import _max_age, parse_issuers, refuse_local_issuers_in_cloud
from common.errors import Forbidden, Unauthenticated

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
