"""Delivery of journal batches to the ERP's HTTP endpoint.

POST {url}/batches with the batch as JSON, the batch id as Idempotency-Key and the
credential (from Secret Manager, through LEDGER_ERP_TOKEN) as a bearer token. 2xx is
an acknowledgement; 409 means the ERP already holds a batch with this id, which is an
acknowledgement too. Anything else, or no answer, is a failed delivery to retry.
"""

from __future__ import annotations

from typing import Any

from common.adapters.http_sessions import ThreadSessions
from common.erp_export import DeliveryFailed


class ErpClient:
    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        if not url:
            raise DeliveryFailed("no ERP endpoint is configured (LEDGER_ERP_URL)")
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._sessions = ThreadSessions(token, {"Content-Type": "application/json"})

    def deliver(self, batch_id: str, body: bytes) -> dict[str, Any]:
        import requests

        try:
            response = self._sessions.get().post(
                f"{self._url}/batches", data=body, headers={"Idempotency-Key": batch_id}, timeout=self._timeout_s
            )
        except requests.RequestException as error:
            raise DeliveryFailed(f"the ERP is unreachable: {type(error).__name__}") from error
        if response.status_code == 409:
            return {"batch_id": batch_id, "duplicate": True}
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"the ERP answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            acknowledgement = response.json()
        except ValueError:
            acknowledgement = {}
        return acknowledgement if isinstance(acknowledgement, dict) else {"body": acknowledgement}

    def totals(self) -> list[dict[str, Any]]:
        """What the ERP has booked: debits and credits per period, account and currency."""
        import requests

        try:
            response = self._sessions.get().get(f"{self._url}/totals", timeout=self._timeout_s)
            response.raise_for_status()
            return list(response.json()["totals"])
        except (requests.RequestException, ValueError, KeyError) as error:
            raise DeliveryFailed(f"the ERP's totals could not be read: {error}") from error
