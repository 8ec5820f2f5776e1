"""From an HTTP request's bearer token to a Caller: the token verified, its
principal looked up (and cached for a short while, so a revoked grant or a disabled
principal stops working within `ttl_s`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from common.auth.callers import Caller, Principal
from common.auth.tokens import TokenVerifier
from common.errors import Forbidden, Unauthenticated

PRINCIPALS_CACHED = 10_000


class CachedPrincipals:
    """Principals by (issuer, subject), each looked up at most once per `ttl_s` (an
    unknown one too): a token's caller over HTTP, a topic's over Pub/Sub."""

    def __init__(
        self,
        lookup: Callable[[str, str], Principal | None],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, issuer: str, subject: str) -> Principal | None:
        now = self._clock()
        cached = self._cache.get((issuer, subject))
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = self._lookup(issuer, subject)
        with self._lock:
            if len(self._cache) >= PRINCIPALS_CACHED:
                self._cache.clear()
            self._cache[(issuer, subject)] = (now + self._ttl_s, principal)
        return principal


class Authenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        principals: Callable[[str, str], Principal | None],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verifier = verifier
        self._principal = CachedPrincipals(principals, ttl_s, clock)

    def caller(
        self,
        authorization: str | None,
        request_id: str,
        client_request_id: str | None = None,
        forwarded_authorization: str | None = None,
    ) -> Caller:
        """The caller of a request. API Gateway (infra/terraform/gateway.tf) puts its own
        token in Authorization, which Cloud Run has already checked and stripped of its
        signature, and passes the end user's in X-Forwarded-Authorization: when that header
        is present, its token is the caller's, and Authorization is not read. Trusting it is
        as safe as trusting Authorization, because the token in it is verified in full,
        signature, issuer, audience and expiry, against the same LEDGER_AUTH_ISSUERS: a
        client that sets the header itself gains nothing it couldn't send as a bearer token."""
        if forwarded_authorization is not None:
            return self._caller_of(forwarded_authorization, request_id, client_request_id, "X-Forwarded-Authorization")
        return self._caller_of(authorization, request_id, client_request_id, "Authorization")

    def _caller_of(
        self, authorization: str | None, request_id: str, client_request_id: str | None, header: str
    ) -> Caller:
        if not authorization or not authorization.strip():
            raise Unauthenticated(f"this function needs an {header}: Bearer token", token_sent=False)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(f"use an {header}: Bearer token", token_sent=False)
        claims = self._verifier.verify(token.strip())
        principal = self._principal(claims["iss"], claims["sub"])
        if principal is None:
            raise Forbidden("the token's subject is not a registered (or active) caller of this ledger")
        return Caller(principal, request_id, client_request_id)
