"""Typed commands parsed from requests. Strict: unknown fields and loose types are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from common.ledger.money import Amount, AssetCode, CreditLimit, Scale, WalletId

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=500)]
Metadata = Annotated[dict[str, str | int | bool | None], Field(max_length=32)]
Action = Literal["topup", "bonus", "usage", "transfer", "void"]
WalletModel = Literal["personal", "enterprise", "reseller"]
WalletStatus = Literal["active", "frozen", "closed"]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TopUp(Command):
    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    external_ref: Text  # the payment provider's reference for the money received
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Bonus(Command):
    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    campaign: Text | None = None
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Usage(Command):
    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    usage_id: Text
    product: Text
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Transfer(Command):
    from_wallet_id: WalletId
    to_wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Void(Command):
    transaction_id: WalletId
    reason: Description | None = None


class CreateWallet(Command):
    owner_id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
    asset: AssetCode
    model: WalletModel = "personal"
    credit_limit: CreditLimit = 0
    metadata: Metadata = Field(default_factory=dict)


class UpdateWallet(Command):
    status: WalletStatus | None = None
    credit_limit: CreditLimit | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateWallet:
        if self.status is None and self.credit_limit is None:
            raise ValueError("give status and/or credit_limit")
        return self


class CreateAsset(Command):
    code: AssetCode
    scale: Scale
    description: Description = ""


class HistoryQuery(BaseModel):
    """Query-string parameters arrive as text, so this model converts (but still bounds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action | None = None
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _aware_times(self) -> HistoryQuery:
        for value in (self.from_, self.to):
            if value is not None and value.tzinfo is None:
                raise ValueError("from and to need a time zone, e.g. 2026-01-31T00:00:00Z")
        return self
