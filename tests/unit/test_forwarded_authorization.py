"""API Gateway passes the end user's token in X-Forwarded-Authorization and puts its own,
signature stripped by Cloud Run, in Authorization: the forwarded one is the caller's,
verified exactly as a bearer token is."""

import pytest

from common.auth.authenticate import Authenticator
from common.auth.callers import Principal
from common.errors import Unauthenticated

USER = Principal("p-user", "iss", "user", "end_user", "t")


class Verifier:
    def verify(self, token):
        if token != "user-token":
            raise Unauthenticated("bad")
        return {"iss": "iss", "sub": "user"}


def authenticator() -> Authenticator:
    return Authenticator(Verifier(), lambda issuer, subject: USER if subject == "user" else None, ttl_s=30)


def test_a_valid_forwarded_token_is_the_caller_whatever_authorization_holds():
    caller = authenticator().caller(
        "Bearer SIGNATURE_REMOVED_BY_GOOGLE", "r", forwarded_authorization="Bearer user-token"
    )
    assert caller.principal == USER


def test_an_invalid_forwarded_token_is_401_even_beside_a_valid_authorization():
    for forwarded in ("Bearer garbage", "", "Basic abc"):
        with pytest.raises(Unauthenticated):
            authenticator().caller("Bearer user-token", "r", forwarded_authorization=forwarded)


def test_without_the_forwarded_header_authorization_decides_as_before():
    assert authenticator().caller("Bearer user-token", "r").principal == USER
    with pytest.raises(Unauthenticated):
        authenticator().caller("Bearer garbage", "r")
