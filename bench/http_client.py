"""A lean HTTP client for load: urllib3 keep-alive pools, one per port, per worker.

requests costs several times urllib3's CPU per call; on a 2-core machine shared with
the servers, the load generator's own CPU would otherwise show up as server latency.

A request whose connection the server closed before answering (gunicorn drops a
keep-alive connection after 2 idle seconds, and a request can cross that close) is
sent again, as a production client would: every money request carries its
Idempotency-Key, so a resend never moves money twice. Resends are counted, and shown.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit

import urllib3


class Response:
    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self.status_code = raw.status
        self.headers = raw.headers
        self.content = raw.data

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


RESENDS = 2


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


resent = _Counter()  # requests sent again after a dropped connection, by every client
# Every request carries the benchmark's caller token (bench/setup.py registers the
# caller): verification is part of what a request costs.
AUTHORIZATION: dict[str, str] = {}


def authorize(token: str) -> None:
    AUTHORIZATION["Authorization"] = f"Bearer {token}"


class Client:
    def __init__(self, timeout_s: float = 30.0) -> None:
        self._pools: dict[tuple[str, int], urllib3.HTTPConnectionPool] = {}
        self._timeout_s = timeout_s

    def post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        pool = self._pools.get((parts.hostname, parts.port))
        if pool is None:
            pool = self._pools[(parts.hostname, parts.port)] = urllib3.HTTPConnectionPool(
                parts.hostname, parts.port, maxsize=1, retries=False, timeout=self._timeout_s
            )
        encoded = json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **AUTHORIZATION, **headers}
        for attempt in range(RESENDS + 1):
            try:
                return Response(pool.urlopen("POST", parts.path or "/", body=encoded, headers=all_headers))
            except urllib3.exceptions.ProtocolError:  # closed before any answer
                if attempt == RESENDS:
                    raise
                resent.add()
        raise AssertionError("unreachable")
