"""Bearer tokens: google-auth's ID-token verification against configured issuers.

The same code verifies the Google-signed OIDC tokens of service accounts, Identity
Platform (Firebase Auth) ID tokens of end users, and, locally and in the tests, the
emulator stack's own issuer. Only the configuration differs (`LEDGER_AUTH_ISSUERS`,
a JSON list of {"issuer", "certs_url", "audiences"}). Each issuer's public keys are
fetched in Google's format (a JSON map of key id to PEM) and cached for as long as
the keys' Cache-Control allows. A certs URL that serves anything else (a JWKS, say)
is a misconfigured issuer: every token it signs is answered 503 and the URL is logged
once, since google-auth would otherwise take its PyJWT path for a JWKS (which ignores
the clock skew) or fail in ways a caller can't fix.

Nothing turns verification off: with no issuer configured every token is refused. An
issuer over plain HTTP or on a loopback address (the local issuer) is refused at start
when the function runs in Google Cloud.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.config import in_google_cloud
from common.errors import DependencyUnavailable, Unauthenticated

DEFAULT_CERTS_MAX_AGE_S = 300.0
# A token whose key id is not among the cached keys refetches them (a rotation), at
# most this often, so a flood of made-up key ids can't turn into a flood of fetches.
REFETCH_UNKNOWN_KEY_AFTER_S = 30.0
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
log = logging.getLogger("ledger.auth")


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    certs_url: str
    audiences: tuple[str, ...]

    @property
    def local(self) -> bool:
        urls = (urlsplit(self.issuer), urlsplit(self.certs_url))
        return any(url.scheme != "https" or (url.hostname or "") in LOOPBACK_HOSTS for url in urls)


# The issuer of the principals that are Pub/Sub topics (common/message_actions.py): no
# token is ever trusted from it, so no HTTP caller can be a topic.
TOPIC_ISSUER = "pubsub"
# The issuer of the automation's own principal (common/automation.py): no token is ever
# trusted from it either, so no caller can pass its postings off as an auto top-up's.
AUTOMATION_ISSUER = "ledger"
RESERVED_ISSUERS = {TOPIC_ISSUER: "the action topics' issuer", AUTOMATION_ISSUER: "the automation's issuer"}


def parse_issuers(raw: str) -> dict[str, TrustedIssuer]:
    """The trusted issuers, by issuer string; a malformed setting stops the function."""
    if not raw.strip():
        return {}
    try:
        items = json.loads(raw)
        issuers = [
            TrustedIssuer(str(item["issuer"]), str(item["certs_url"]), tuple(str(a) for a in item["audiences"]))
            for item in items
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"LEDGER_AUTH_ISSUERS is not a JSON list of issuers: {error}") from None
    if any(not issuer.audiences for issuer in issuers):
        raise ValueError("LEDGER_AUTH_ISSUERS: every issuer needs at least one audience")
    for issuer in issuers:
        # a token from such an issuer could name a topic and post as its publisher, or
        # post as the automation and so escape the auto top-ups
        if issuer.issuer in RESERVED_ISSUERS:
            raise ValueError(
                f"LEDGER_AUTH_ISSUERS: {issuer.issuer!r} is {RESERVED_ISSUERS[issuer.issuer]}, not a token's"
            )
    return {issuer.issuer: issuer for issuer in issuers}


def refuse_local_issuers_in_cloud(
    issuers: Mapping[str, TrustedIssuer], environ: Mapping[str, str] = os.environ
) -> None:
    if in_google_cloud(environ):
        local = [issuer.issuer for issuer in issuers.values() if issuer.local]
        if local:
            raise RuntimeError(
                f"refusing to start: a local (non-HTTPS or loopback) token issuer is trusted in Google Cloud: {local}"
            )


class CachedCerts:
    """A google-auth transport request that keeps each certs response for its max-age,
    and refuses one that is not in Google's x509 format (key id to PEM)."""

    def __init__(
        self,
        timeout_s: float,
        inner: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if inner is None:
            import google.auth.transport.urllib3
            import urllib3

            inner = google.auth.transport.urllib3.Request(urllib3.PoolManager())
        self._inner = inner
        self._timeout_s = timeout_s
        self._clock = clock
        # url: (fetched, expires, response, its keys or None when not Google's format)
        self._cache: dict[str, tuple[float, float, Any, frozenset[str] | None]] = {}
        self._misconfigured_logged: set[str] = set()
        self._lock = threading.Lock()

    def __call__(
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, timeout: Any = None, **kw: Any
    ) -> Any:
        now = self._clock()
        cached = self._cache.get(url)
        if cached is None or cached[1] <= now:
            with self._lock:
                cached = self._cache.get(url)
                if cached is None or cached[1] <= now:
                    response = self._inner(url, method=method, body=body, headers=headers, timeout=self._timeout_s)
                    if response.status != 200:
                        return response  # google-auth makes it a TransportError: 503, tried again next time
                    cached = (now, now + _max_age(response.headers), response, _google_keys(response.data))
                    self._cache[url] = cached
        if cached[3] is None:
            self._refuse_misconfigured(url)
        return cached[2]

    def _refuse_misconfigured(self, url: str) -> None:
        with self._lock:
            first = url not in self._misconfigured_logged
            self._misconfigured_logged.add(url)
        if first:
            log.error(
                "a trusted issuer's certs_url does not serve Google's x509 certs format (key id to PEM);"
                " configure that URL, not a JWKS",
                extra={"certs_url": url},
            )
        raise DependencyUnavailable("the token issuer is misconfigured on this ledger", code="issuer_unavailable")

    def keys(self, url: str) -> frozenset[str] | None:
        cached = self._cache.get(url)
        return None if cached is None else cached[3]

    def forget_if_older(self, url: str, age_s: float) -> None:
        cached = self._cache.get(url)
        if cached is not None and self._clock() - cached[0] >= age_s:
            self._cache.pop(url, None)


def _google_keys(data: bytes) -> frozenset[str] | None:
    """The key ids of a certs response in Google's format, or None for anything else
    (a JWKS, `{"keys": [...]}`, included)."""
    try:
        certs = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(certs, dict) or "keys" in certs or not all(isinstance(v, str) for v in certs.values()):
        return None
    return frozenset(certs)


def _max_age(headers: Mapping[str, str]) -> float:
    found = re.search(r"max-age=(\d+)", headers.get("cache-control", "") or headers.get("Cache-Control", ""))
    return float(found.group(1)) if found else DEFAULT_CERTS_MAX_AGE_S


class TokenVerifier:
    def __init__(
        self,
        issuers: Mapping[str, TrustedIssuer],
        clock_skew_s: int,
        certs_timeout_s: float,
        certs: CachedCerts | None = None,
    ) -> None:
        self._issuers = dict(issuers)
        self._clock_skew_s = clock_skew_s
        self._certs = certs or CachedCerts(certs_timeout_s)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims; 401 for anything that does not verify, 503 when
        the issuer's keys can't be fetched."""
        import google.auth.exceptions
        from google.auth import jwt
        from google.oauth2 import id_token

        try:
            header = jwt.decode_header(token)
            unverified = jwt.decode(token, verify=False)
        except (ValueError, TypeError, google.auth.exceptions.GoogleAuthError):
            raise Unauthenticated("the bearer token is not a JWT") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the token's key id is not a string")
        issued_by = unverified.get("iss") if isinstance(unverified, dict) else None
        issuer = self._issuers.get(issued_by) if isinstance(issued_by, str) else None
        if issuer is None:
            raise Unauthenticated("the token's issuer is not trusted")
        known = self._certs.keys(issuer.certs_url)
        if known is not None and kid not in known:
            self._certs.forget_if_older(issuer.certs_url, REFETCH_UNKNOWN_KEY_AFTER_S)
        try:
            claims = id_token.verify_token(
                token,
                self._certs,  # type: ignore[arg-type]  # a transport Request by protocol
                audience=list(issuer.audiences),
                certs_url=issuer.certs_url,
                clock_skew_in_seconds=self._clock_skew_s,
            )
        except google.auth.exceptions.TransportError as error:
            raise DependencyUnavailable(
                "the token issuer's keys could not be fetched", code="issuer_unavailable"
            ) from error
        except (ValueError, TypeError, google.auth.exceptions.GoogleAuthError) as error:
            raise Unauthenticated(f"the token does not verify: {_reason(error)}") from None
        if claims.get("iss") != issuer.issuer or not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise Unauthenticated("the token's issuer or subject is missing")
        return dict(claims)


# Words of google-auth's messages, in the order they are looked for, and what the 401 says.
_REASONS = {
    "expired": "expired",
    "audience": "wrong audience",
    "signature": "bad signature",
    "not found": "unknown signing key",
    "algorithm": "unsupported algorithm",
    "too early": "not yet valid",
    "certificate": "unknown signing key",
}


def _reason(error: Exception) -> str:
    """What failed, without echoing any part of the token."""
    text = str(error).lower()
    return next((reason for word, reason in _REASONS.items() if word in text), "invalid")
