"""Delivery of journal batches to the ERP's HTTP endpoint.

POST {url}/batches with the batch as JSON, the batch id as Idempotency-Key and the
credential (from Secret Manager, through LEDGER_ERP_TOKEN) as a bearer token. 2xx is
an acknowledgement; 409 means the ERP already holds a batch with this id, which is an
acknowledgement too. Anything else, or no answer, is a failed delivery to retry.
"""

from __future__ import annotations

from typing import Any

from common.adapters.bearer_http import BearerHttp, HttpUnreachable
from common.erp_export import DeliveryFailed


class ErpClient:
    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        if not url:
            raise DeliveryFailed("no ERP endpoint is configured (LEDGER_ERP_URL)")
        self._url = url.rstrip("/")
        self._http = BearerHttp(token, timeout_s, {"Content-Type": "application/json"})

    def deliver(self, batch_id: str, body: bytes) -> dict[str, Any]:
        try:
            response = self._http.request("POST", f"{self._url}/batches", body, {"Idempotency-Key": batch_id})
        except HttpUnreachable as error:
            raise DeliveryFailed(f"the ERP is unreachable: {error}") from error
        if response.status == 409:
            return {"batch_id": batch_id, "duplicate": True}
        if not 200 <= response.status < 300:
            raise DeliveryFailed(f"the ERP answered HTTP {response.status}: {response.text[:200]}")
        try:
            acknowledgement = response.json()
        except ValueError:
            acknowledgement = {}
        return acknowledgement if isinstance(acknowledgement, dict) else {"body": acknowledgement}

    def totals(self) -> list[dict[str, Any]]:
        """What the ERP has booked: debits and credits per period, account and currency."""
        try:
            response = self._http.request("GET", f"{self._url}/totals")
            if response.status != 200:
                raise DeliveryFailed(f"the ERP's totals could not be read: HTTP {response.status}")
            return list(response.json()["totals"])
        except (HttpUnreachable, ValueError, KeyError, TypeError) as error:
            raise DeliveryFailed(f"the ERP's totals could not be read: {type(error).__name__}: {error}") from error
