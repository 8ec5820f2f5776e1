"""Outbound HTTP with a bearer credential: the ERP's and the payment provider's clients.

One urllib3 PoolManager per client, created on first use: it is thread-safe (a function
serves requests on several threads) and keeps connections alive. urllib3 is already on
every HTTP function's path (the bearer token's verification, common/auth/tokens.py), so
the clients add no import there, and a scheduled function that calls the ERP pays
urllib3's import alone (about 11 ms on this machine, where requests on top of it took
26 ms). The whole request, connecting included, has one timeout. No retries and no
redirects here (a redirect is an answer like any other non-2xx): each caller
decides what a failure means (a payment's outcome may be unknown; an ERP batch is sent
again under the same id).
"""

from __future__ import annotations

import json
import threading
from typing import Any

KEEP_ALIVE_PER_HOST = 16  # at least a function instance's concurrency (infra/terraform: function_concurrency)


class HttpUnreachable(Exception):
    """No answer: the connection failed, or the answer did not come within the timeout."""


class Answer:
    def __init__(self, status: int, data: bytes) -> None:
        self.status = status
        self.data = data

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.data)


class BearerHttp:
    def __init__(self, token: str, timeout_s: float, headers: dict[str, str] | None = None) -> None:
        self._headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        self._timeout_s = timeout_s
        self._pool: Any = None
        self._lock = threading.Lock()

    def _manager(self) -> Any:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    import urllib3

                    self._pool = urllib3.PoolManager(
                        headers=self._headers,
                        timeout=urllib3.Timeout(total=self._timeout_s),
                        retries=False,
                        # kept-alive connections per host: one per request an instance
                        # serves at once (its concurrency), more open and close
                        maxsize=KEEP_ALIVE_PER_HOST,
                        block=False,
                    )
        return self._pool

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        import urllib3

        try:
            response = self._manager().request(
                method, url, body=body, headers={**self._headers, **(headers or {})}, redirect=False
            )
        except urllib3.exceptions.HTTPError as error:
            raise HttpUnreachable(type(error).__name__) from error
        return Answer(response.status, response.data)
