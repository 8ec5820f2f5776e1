"""Structured JSON logs that Cloud Logging understands (`severity`, `message`, and the
request's trace fields: common/tracing.py)."""

from __future__ import annotations

import json
import logging
import sys

from common import tracing

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name}
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        entry.update(tracing.current_fields())
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str) -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def configure_from_settings() -> None:
    """For the Pub/Sub-triggered functions, which have no HTTP edge to do it."""
    from common.config import get_settings

    configure(get_settings().log_level)
