"""The payment provider over HTTP (locally emulators/payment_provider.py).

POST {url}/charges {"funding_ref", "amount", "asset"} with the charge's idempotency key
as Idempotency-Key and the credential (a Secret Manager secret in Google Cloud, through
LEDGER_PAYMENT_PROVIDER_TOKEN) as a bearer token. 201 or 200 with "status" confirmed or
declined is the answer (common/payments.py checks it); anything else, or none within the
timeout, is the provider unavailable: the charge may or may not have happened, and the
same key finds out.
"""

from __future__ import annotations

import json

from common.adapters.bearer_http import BearerHttp, HttpUnreachable
from common.errors import DependencyUnavailable
from common.payments import ANSWERS, Charge, charge_from


class HttpPaymentProvider:
    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        self._url = url.rstrip("/")
        self._http = BearerHttp(token, timeout_s, {"Content-Type": "application/json"})

    def charge(self, key: str, funding_ref: str, amount: int, asset: str) -> Charge:
        if not self._url:
            raise DependencyUnavailable("no payment provider is configured (LEDGER_PAYMENT_PROVIDER_URL)")
        try:
            response = self._http.request(
                "POST",
                f"{self._url}/charges",
                json.dumps({"funding_ref": funding_ref, "amount": amount, "asset": asset}).encode(),
                {"Idempotency-Key": key},
            )
        except HttpUnreachable as error:
            raise DependencyUnavailable(f"the payment provider is unreachable: {error}") from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status not in (200, 201) or not isinstance(body, dict) or body.get("status") not in ANSWERS:
            raise DependencyUnavailable(f"the payment provider answered HTTP {response.status}")
        return charge_from(body)
