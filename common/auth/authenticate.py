"""From an HTTP request's Authorization header to a Caller: the token verified, its
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

    def caller(self, authorization: str | None, request_id: str, client_request_id: str | None = None) -> Caller:
        if not authorization or not authorization.strip():
            raise Unauthenticated("this function needs an Authorization: Bearer token", token_sent=False)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use an Authorization: Bearer token", token_sent=False)
        claims = self._verifier.verify(token.strip())
        principal = self._principal(claims["iss"], claims["sub"])
        if principal is None:
            raise Forbidden("the token's subject is not a registered (or active) caller of this ledger")
        return Caller(principal, request_id, client_request_id)
