"""The payment provider's port: charging a stored funding reference (an auto top-up).

A charge is idempotent by its key at the provider: the same key charges once, however
often it is sent, and answers the same charge. `charge` answers a confirmed or a
declined Charge; a provider that is down, slow or answers anything else raises
DependencyUnavailable, and the caller tries again later with the same key. An answer
that says confirmed or declined but is malformed (no usable charge id) raises
ProviderError: asking again answers the same, so it is final for the firing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

ANSWERS = ("confirmed", "declined")
# What the firing (automation_firings.charge_id) and the top-up's external_ref can hold:
# 1-200 characters, no surrounding blanks, no control characters.
CHARGE_ID = re.compile(r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,198}[^\s\x00-\x1f\x7f])?")


class ProviderError(Exception):
    """The provider answered, and the answer can't be used: never asked again."""


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


def charge_from(answer: Mapping[str, Any]) -> Charge:
    """The Charge a provider's answer (status confirmed or declined) states, or
    ProviderError when its charge id or reason could not be recorded."""
    charge_id, reason = answer.get("charge_id"), answer.get("reason")
    if not isinstance(charge_id, str) or not CHARGE_ID.fullmatch(charge_id):
        raise ProviderError(f"the payment provider's {answer.get('status')} answer has no usable charge_id")
    if reason is not None and not isinstance(reason, str):
        raise ProviderError("the payment provider's answer has a reason that is not text")
    return Charge(str(answer["status"]), charge_id, reason)
