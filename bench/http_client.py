"""A lean HTTP client for load: urllib3 keep-alive pools, one per port, per worker.

requests costs several times urllib3's CPU per call; on a 2-core machine shared with
the servers, the load generator's own CPU would otherwise show up as server latency.
"""

from __future__ import annotations

import json
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


class Client:
    def __init__(self) -> None:
        self._pools: dict[tuple[str, int], urllib3.HTTPConnectionPool] = {}

    def post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        pool = self._pools.get((parts.hostname, parts.port))
        if pool is None:
            pool = self._pools[(parts.hostname, parts.port)] = urllib3.HTTPConnectionPool(
                parts.hostname, parts.port, maxsize=1, retries=False, timeout=30.0
            )
        raw = pool.urlopen(
            "POST",
            parts.path or "/",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
        )
        return Response(raw)
