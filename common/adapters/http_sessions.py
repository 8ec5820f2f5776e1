"""A requests.Session per thread, with a bearer credential: the ERP's and the payment
provider's HTTP clients. requests' sessions are not thread-safe, and a function serves
requests on several threads; requests itself is imported on first use, so a function
that never calls out starts without it."""

from __future__ import annotations

import threading
from typing import Any


class ThreadSessions:
    def __init__(self, token: str, headers: dict[str, str] | None = None) -> None:
        self._token = token
        self._headers = headers or {}
        self._local = threading.local()

    def get(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = self._local.session = requests.Session()
            if self._token:
                session.headers["Authorization"] = f"Bearer {self._token}"
            session.headers.update(self._headers)
        return session
