"""The payment provider's port: charging a stored funding reference (an auto top-up).

A charge is idempotent by its key at the provider: the same key charges once, however
often it is sent, and answers the same charge. `charge` answers a confirmed or a
declined Charge; a provider that is down, slow or answers anything else raises
DependencyUnavailable, and the caller tries again later with the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Charge:
    status: str  # confirmed or declined
    charge_id: str
    reason: str | None = None  # why a charge was declined, as the provider says it

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"


class PaymentProvider(Protocol):
    def charge(self, key: str, funding_ref: str, amount: int, asset: str) -> Charge: ...
