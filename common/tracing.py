"""The request's trace, for Cloud Logging: every JSON line written while serving one
request carries `logging.googleapis.com/trace` (and the span, and whether it was
sampled), so the request's lines group together under its trace in the console.

The trace comes from the W3C `traceparent` header (or a CloudEvent's `traceparent`
extension), else Google's `X-Cloud-Trace-Context`. Both are caller-controlled text on
their way into every log line: anything but their exact formats is ignored (no
injection into the log's fields), and all-zero ids are invalid (W3C). The edges bind it
to a contextvar for the request (`bound`); the formatter (common/logs.py) reads it, so
no log call has to pass it on.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
# version-traceid-parentid-flags, lowercase hex only (W3C Trace Context, level 1)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# TRACE_ID/SPAN_ID;o=OPTIONS, the span id in decimal (an unsigned 64-bit integer)
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]+))?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("trace_fields", default=None)


@dataclass(frozen=True)
class Trace:
    trace_id: str  # 32 lowercase hex digits
    span_id: str | None = None  # 16 lowercase hex digits, as Cloud Logging wants it
    sampled: bool | None = None


def from_traceparent(value: str | None) -> Trace | None:
    match = _TRACEPARENT.fullmatch((value or "").strip())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff":  # never a valid version
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return Trace(trace_id, span_id, bool(int(flags, 16) & 1))


def from_cloud_trace_context(value: str | None) -> Trace | None:
    match = _CLOUD_TRACE.fullmatch((value or "").strip())
    if match is None:
        return None
    trace_id, span, options = match.groups()
    trace_id = trace_id.lower()
    if trace_id == _ZERO_TRACE:
        return None
    span_id = None
    if span is not None:
        number = int(span)
        if not 0 < number < 2**64:
            return None
        span_id = f"{number:016x}"
    return Trace(trace_id, span_id, None if options is None else options == "1")


def from_headers(headers: Any) -> Trace | None:
    """`traceparent` first (the standard, and what Cloud Run forwards), else
    `X-Cloud-Trace-Context`; None when neither is valid."""
    return from_traceparent(headers.get("traceparent")) or from_cloud_trace_context(
        headers.get("X-Cloud-Trace-Context")
    )


def log_fields(trace: Trace | None, project: str) -> dict[str, Any]:
    if trace is None:
        return {}
    fields: dict[str, Any] = {TRACE_FIELD: f"projects/{project}/traces/{trace.trace_id}"}
    if trace.span_id is not None:
        fields[SPAN_FIELD] = trace.span_id
    if trace.sampled is not None:
        fields[SAMPLED_FIELD] = trace.sampled
    return fields


@contextmanager
def bound(trace: Trace | None, project: str) -> Iterator[None]:
    """Every log line written inside the block (on this thread) carries the trace."""
    token = _fields.set(log_fields(trace, project) or None)
    try:
        yield
    finally:
        _fields.reset(token)


def current_fields() -> dict[str, Any]:
    return _fields.get() or {}
