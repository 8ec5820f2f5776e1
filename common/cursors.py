"""Opaque paging cursors, signed and bound to the query that produced them.

A cursor carries a position (the last row a page showed) and an HMAC over that
position and the query's scope: which listing, which wallet, which filters, which
caller's tenant. The scope itself is not in the cursor; the server recomputes it from
the request that brings the cursor back. So a cursor is only good for the next page of
the very query it came from: one altered, forged, taken to another wallet or to other
filters, or replayed by another tenant is refused as `invalid_cursor`, and a client
can't page from a position it chose.

Pure: no I/O and no settings. The key comes from the composition root
(common/bootstrap.py: LEDGER_CURSOR_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.errors import InvalidRequest

_POSITION = struct.Struct(">Q")  # a row id: a positive int64
_TAG_BYTES = 16  # 128 bits of HMAC-SHA256: forging one is out of reach, and the cursor stays short
_CURSOR_BYTES = _POSITION.size + _TAG_BYTES
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{32}")  # the 24 bytes in unpadded base64url, one spelling only
MIN_KEY_BYTES = 32


def _invalid() -> InvalidRequest:
    return InvalidRequest("cursor is not one this API returned for this query", code="invalid_cursor")


def _canonical(value: Any) -> Any:
    """Equal filters, however written, sign alike: a time is its UTC instant."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


class Cursors:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a cursor key has at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _tag(self, position: bytes, scope: Mapping[str, Any]) -> bytes:
        context = json.dumps({k: _canonical(v) for k, v in scope.items()}, sort_keys=True, separators=(",", ":"))
        return hmac.new(self._key, position + context.encode(), hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, position: int, scope: Mapping[str, Any]) -> str:
        packed = _POSITION.pack(position)
        return base64.urlsafe_b64encode(packed + self._tag(packed, scope)).decode().rstrip("=")

    def decode(self, cursor: str, scope: Mapping[str, Any]) -> int:
        """The position `cursor` holds, if this key signed it for this very scope."""
        if not _CURSOR_TEXT.fullmatch(cursor):
            raise _invalid()
        raw = base64.urlsafe_b64decode(cursor)
        packed, tag = raw[: _POSITION.size], raw[_POSITION.size :]
        if not hmac.compare_digest(tag, self._tag(packed, scope)):
            raise _invalid()
        position: int = _POSITION.unpack(packed)[0]
        return position


def history_scope(wallet_id: int, tenant: str, action: str | None, from_: Any, to: Any) -> dict[str, Any]:
    """What a history cursor is bound to: the wallet, the filters and the caller's tenant
    (not the page size, which may change from page to page)."""
    return {"list": "history", "wallet_id": wallet_id, "tenant": tenant, "action": action, "from": from_, "to": to}
