"""Firestore documents over Firestore's REST API, on the standard library's http.client.

The functions make four document calls (create if absent, get, merge, delete). The
official client, google-cloud-firestore, brings grpc, proto-plus and every generated
Firestore type along: its import was the largest part of a money function's cold
start, far more than http.client and ssl (bench/results/imports.md; the cold start
it was part of: bench/results/notes.md). The official client stays the tests'
independent reader: tests/integration/test_firestore_rest.py checks that what is
written here is what it reads and writes.

Access tokens come from the metadata server, as on every Google Cloud runtime
(google-auth's compute-engine credentials import requests and cryptography, a cold
start cost of their own: bench/results/imports.md); with GOOGLE_APPLICATION_CREDENTIALS
set, google-auth reads that file instead.
Against the emulator (FIRESTORE_EMULATOR_HOST) the emulator's admin token is sent, as
the official client does.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from tenacity import Retrying, retry_if_exception, stop_before_delay, wait_exponential

FIRESTORE_HOST = "firestore.googleapis.com"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
TOKEN_MARGIN_S = 60.0  # refresh a token this long before it expires
IDLE_CONNECTIONS = 32
IDLE_MAX_S = 30.0


class FirestoreError(Exception):
    """A call that did not get its answer: `status` is the HTTP status (0 when no
    response came), `reason` Firestore's status name or the network error."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"firestore {status} {reason}: {message}".rstrip(": "))
        self.status = status
        self.reason = reason


# --- values: Firestore's JSON encoding of document fields (pure) -----------------------

_TIMESTAMP = re.compile(r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def encode_value(value: Any) -> dict[str, Any]:
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):  # before int: bool is an int
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        # JSON has no NaN or infinities; Firestore's JSON spells them as strings
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        return {"doubleValue": value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("Firestore timestamps must be timezone-aware")
        return {"timestampValue": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {"mapValue": {"fields": encode_fields(value)}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [encode_value(item) for item in value]}}
    raise TypeError(f"no Firestore encoding for {type(value).__name__}")


def decode_value(value: dict[str, Any]) -> Any:
    (kind, raw), *_ = value.items()
    if kind == "nullValue":
        return None
    if kind in ("booleanValue", "stringValue", "referenceValue"):
        return raw
    if kind == "integerValue":
        return int(raw)
    if kind == "doubleValue":
        return float(raw)  # "NaN" and "Infinity" arrive as strings
    if kind == "timestampValue":
        return parse_timestamp(raw)
    if kind == "bytesValue":
        return base64.b64decode(raw)
    if kind == "mapValue":
        return decode_fields(raw.get("fields", {}))
    if kind == "arrayValue":
        return [decode_value(item) for item in raw.get("values", [])]
    if kind == "geoPointValue":
        return (raw.get("latitude", 0.0), raw.get("longitude", 0.0))
    raise ValueError(f"unknown Firestore value type {kind}")


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 as Firestore writes it: up to nanoseconds, which Python's datetime
    truncates to microseconds (the official client does the same for comparisons)."""
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    return datetime.fromisoformat(f"{match['base']}.{fraction}{zone}").astimezone(UTC)


def encode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: encode_value(value) for name, value in fields.items()}


def decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: decode_value(value) for name, value in fields.items()}


# --- access tokens -----------------------------------------------------------------------


class TokenSource(Protocol):
    def __call__(self) -> str:
        """A valid access token; FirestoreError when none can be had."""

    def invalidate(self) -> None:
        """Forget the current token: Firestore refused it."""


class MetadataServerToken:
    """The runtime service account's access token, cached until shortly before expiry."""

    def __init__(self, timeout_s: float) -> None:
        self._host = os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._token = ""
        self._valid_until = 0.0

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() >= self._valid_until:
                self._token, lifetime_s = self._fetch()
                self._valid_until = time.monotonic() + lifetime_s - TOKEN_MARGIN_S
            return self._token

    def invalidate(self) -> None:
        """Firestore refused the token (revoked, or the clock is off): fetch a new one."""
        with self._lock:
            self._valid_until = 0.0

    def _fetch(self) -> tuple[str, float]:
        connection = http.client.HTTPConnection(self._host, timeout=self._timeout)
        try:
            connection.request("GET", METADATA_TOKEN_PATH, headers={"Metadata-Flavor": "Google"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise FirestoreError(response.status, "token_unavailable", body[:200].decode(errors="replace"))
            token = json.loads(body)
            return str(token["access_token"]), float(token["expires_in"])
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            raise FirestoreError(0, "token_unavailable", f"metadata server: {error!r}") from error
        finally:
            connection.close()


class KeyFileToken:
    """GOOGLE_APPLICATION_CREDENTIALS (a key file, outside Google Cloud), via google-auth."""

    def __init__(self, timeout_s: float) -> None:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests

        self._credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/datastore"])
        self._request = google.auth.transport.requests.Request()
        self._timeout = timeout_s
        self._failures = (google.auth.exceptions.GoogleAuthError,)
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if not self._credentials.valid:
                try:
                    # google-auth would wait 120 s for the token endpoint
                    self._credentials.refresh(functools.partial(self._request, timeout=self._timeout))
                except self._failures as error:
                    raise FirestoreError(0, "token_unavailable", repr(error)) from error
            return str(self._credentials.token)

    def invalidate(self) -> None:
        with self._lock:
            self._credentials.token = None


class EmulatorToken:
    """The emulator's admin access, as the official clients send it."""

    def __call__(self) -> str:
        return "owner"

    def invalidate(self) -> None:
        pass


def default_token(timeout_s: float) -> MetadataServerToken | KeyFileToken:
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return KeyFileToken(timeout_s)
    return MetadataServerToken(timeout_s)


# --- the client ------------------------------------------------------------------------


class _NoDelay:
    """Send each request at once: http.client writes headers and body separately, and
    with Nagle's algorithm the body then waits for the server's delayed ACK (what that
    cost a create against the emulator: bench/results/notes.md)."""

    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        assert self.sock is not None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPConnection(_NoDelay, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_NoDelay, http.client.HTTPSConnection):
    pass


class _Connections:
    """Keep-alive connections to one host, one per concurrent call: http.client
    connections are not thread-safe, and functions-framework serves on threads.

    A connection idle longer than IDLE_MAX_S is not reused: between requests a
    serverless instance gets no CPU, and a connection a middlebox dropped silently
    would cost a call its whole deadline (a timeout is not retried).
    """

    def __init__(self, connect: Callable[[], http.client.HTTPConnection]) -> None:
        self._connect = connect
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    def take(self) -> http.client.HTTPConnection:
        stale = []
        with self._lock:
            while self._idle:
                since, connection = self._idle.pop()
                if time.monotonic() - since <= IDLE_MAX_S:
                    break
                stale.append(connection)
            else:
                connection = None
        for old in stale:
            old.close()
        return connection if connection is not None else self._connect()

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append((time.monotonic(), connection))
                return
        connection.close()


def _retryable(error: BaseException) -> bool:
    if isinstance(error, FirestoreError):
        # UNAVAILABLE, and ABORTED (contention), as Firestore's own clients retry them;
        # UNAUTHENTICATED once the refused token is dropped (see _send)
        return error.status in (401, 503) or error.reason == "ABORTED"
    # A refused connection or a keep-alive connection the server had closed: the request
    # never reached Firestore. A timeout is not retried: the call may have taken effect.
    return isinstance(error, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError))


class FirestoreDocuments:
    """Documents of one Firestore database, addressed by "collection/document" paths.

    Every call retries what is safe to retry (see `_retryable`) within `timeout_s` in
    all, then raises FirestoreError.
    """

    def __init__(
        self,
        project: str,
        database: str,
        *,
        timeout_s: float,
        emulator_host: str | None = None,
    ) -> None:
        self._timeout = timeout_s
        self._root = f"/v1/projects/{quote(project, safe='')}/databases/{quote(database, safe='()')}/documents"
        if emulator_host:
            host, _, port = emulator_host.rpartition(":")
            host = host.strip("[]")  # an IPv6 address, as in [::1]:8080
            self._connections = _Connections(lambda: _HTTPConnection(host, int(port), timeout=timeout_s))
            self._token: TokenSource = EmulatorToken()
        else:
            import ssl

            tls = ssl.create_default_context()
            self._connections = _Connections(lambda: _HTTPSConnection(FIRESTORE_HOST, timeout=timeout_s, context=tls))
            self._token = default_token(timeout_s)
        self._retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_before_delay(timeout_s),  # no sleep that would end past the deadline
            wait=wait_exponential(multiplier=0.05, max=0.5),
            reraise=True,
        )

    def create(self, path: str, fields: dict[str, Any]) -> bool:
        """Create the document if absent; False when it already exists."""
        collection, _, document_id = path.rpartition("/")
        try:
            self._call("POST", collection, {"documentId": document_id}, {"fields": encode_fields(fields)})
        except FirestoreError as error:
            if error.reason == "ALREADY_EXISTS":
                return False
            raise
        return True

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            document = self._call("GET", path)
        except FirestoreError as error:
            if error.reason == "NOT_FOUND":
                return None
            raise
        return decode_fields(document.get("fields", {}))

    def merge(self, path: str, fields: dict[str, Any]) -> None:
        """Set these fields, creating the document if it is missing; others are kept."""
        self._call("PATCH", path, {"updateMask.fieldPaths": list(fields)}, {"fields": encode_fields(fields)})

    def delete(self, path: str) -> None:
        """Delete the document; deleting a missing one is not an error."""
        self._call("DELETE", path)

    def _call(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        target = f"{self._root}/{quote(path)}"
        if query:
            target += "?" + urlencode(query, doseq=True)
        payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        deadline = time.monotonic() + self._timeout
        try:
            for attempt in self._retrying:
                with attempt:
                    return self._send(method, target, payload, deadline)
        except FirestoreError:
            raise
        except (OSError, http.client.HTTPException) as error:  # incl. a cut-off or garbled response
            raise FirestoreError(0, type(error).__name__, str(error)) from error
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _send(self, method: str, target: str, payload: bytes | None, deadline: float) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token()}"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        connection = self._connections.take()
        remaining = max(deadline - time.monotonic(), 0.05)
        connection.timeout = remaining
        if connection.sock is not None:
            connection.sock.settimeout(remaining)
        try:
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._connections.give_back(connection)
        try:
            answer = json.loads(data) if data else {}
        except ValueError:  # a proxy's or a load balancer's error page
            answer = {}
        if response.status == 401:
            self._token.invalidate()
        if response.status >= 300:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise FirestoreError(response.status, error.get("status", "HTTP_ERROR"), error.get("message", ""))
        return answer
