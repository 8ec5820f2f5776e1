"""Where a request's time goes: named spans summed per request and reported in a
`Server-Timing` response header (e.g. `firestore;dur=3.10, postgres;dur=4.02`).

A context variable holds the current request's spans, so concurrent requests on the
server's threads never mix; outside a request, spans cost one lookup and record nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_spans: ContextVar[dict[str, float] | None] = ContextVar("ledger_spans", default=None)


def begin_request() -> None:
    _spans.set({})


@contextmanager
def span(name: str) -> Iterator[None]:
    spans = _spans.get()
    if spans is None:
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        spans[name] = spans.get(name, 0.0) + (time.perf_counter() - began) * 1000


def server_timing(total_ms: float) -> str:
    spans = _spans.get() or {}
    parts = [f"{name};dur={ms:.2f}" for name, ms in spans.items()]
    return ", ".join([*parts, f"total;dur={total_ms:.2f}"])
