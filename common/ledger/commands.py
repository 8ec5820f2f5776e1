"""Typed commands parsed from requests. Strict: unknown fields and loose types are refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from common.ledger.money import MAX_MINOR_UNITS, Amount, AssetCode, CreditLimit, Scale, WalletId

# Postgres text holds no NUL character: refused here (400), not by the database (a 500).
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)]
MetadataText = Annotated[str, StringConstraints(pattern=NO_NUL)]
# A bulk migration marks its postings and wallets with these (common/migrate.py); a
# caller's metadata may not, or it could steer what a migration's rollback voids or
# which wallet an import pays into.
RESERVED_METADATA = ("migration_id", "migration_row")


def _no_reserved_keys(metadata: dict[str, Any]) -> dict[str, Any]:
    reserved = [name for name in RESERVED_METADATA if name in metadata]
    if reserved:
        raise ValueError(f"metadata.{reserved[0]} is reserved for bulk migrations")
    return metadata


# a whole number a reader of the JSON in any language (and Postgres' bigint) can hold
MetadataNumber = Annotated[int, Field(ge=-(2**63), le=MAX_MINOR_UNITS)]
Metadata = Annotated[
    dict[MetadataText, MetadataText | MetadataNumber | bool | None],
    Field(max_length=32),
    AfterValidator(_no_reserved_keys),
]
Action = Literal[
    "topup",
    "addon",
    "bonus",
    "usage",
    "transfer",
    "void",
    "allocate",
    "reclaim",
    "expiry",
    "opening_balance",
    "dormant_sweep",
    "dormant_breakage",
    "migration_transfer",
]
WalletModel = Literal["personal", "enterprise", "reseller"]
WalletStatus = Literal["active", "frozen", "closed"]
SpendMode = Literal["allocated", "shared_pool"]
Period = Literal["day", "week", "month"]


def _iso_text(value: Any) -> Any:
    """Pydantic also reads a number, or a string of one, as Unix time: 0.5 is not a time here."""
    if isinstance(value, datetime):  # built in Python, not parsed
        return value
    if not (isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\d[Tt ]", value)):
        raise ValueError("a time is an ISO 8601 string with its zone, e.g. 2026-12-31T23:59:59Z")
    return value


def _storable(value: datetime) -> datetime:
    """Postgres holds zone offsets up to 15:59 (ISO 8601 allows 23:59), and a time must
    have a UTC equivalent: year 1 at +23:00 has none."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) >= timedelta(hours=16):
        raise ValueError("a zone offset is at most 15:59")
    try:
        value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("the time is out of range") from error
    return value


# JSON has no time type: an ISO 8601 string with its zone, e.g. 2026-12-31T23:59:59Z.
Instant = Annotated[AwareDatetime, Strict(False), BeforeValidator(_iso_text), AfterValidator(_storable)]


class Command(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import. Each
    # function uses one or two of these models, and building all of them at import would
    # lengthen every cold start (bench/results/imports.md, "First use").
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class TopUp(Command):
    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    external_ref: Text  # the payment provider's reference for the money received
    # What was paid, when less than the credit (a reseller's wholesale price): the
    # difference is booked as a discount.
    price: Annotated[int, Field(gt=0)] | None = None
    expires_at: Instant | None = None  # the credit becomes a lot that expires then
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _price_within_amount(self) -> TopUp:
        if self.price is not None and self.price > self.amount:
            raise ValueError("price can't exceed amount (a top-up never books a premium)")
        # the stored metadata's price is what the database's posting rule reads
        # (db/schema/65_posting_rules.sql): only the price field may set it
        if "price" in self.metadata:
            raise ValueError("metadata.price is reserved: send a wholesale price as the price field")
        return self


class AddOn(Command):
    """Extra credit bought on top of a plan."""

    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    external_ref: Text
    plan: Text | None = None
    expires_at: Instant | None = None
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Bonus(Command):
    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    campaign: Text | None = None
    expires_at: Instant | None = None
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Allocate(Command):
    """Parent to child (allocate) or child to parent (reclaim): `wallet_id` is the child."""

    wallet_id: WalletId
    asset: AssetCode
    amount: Amount
    description: Description | None = None
    metadata: Metadata = Field(default_factory=dict)


class Reclaim(Allocate):
    pass


class ExtendLot(Command):
    expires_at: Instant
    reason: Description | None = None


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


OwnerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]


class CreateWallet(Command):
    owner_id: OwnerId
    asset: AssetCode
    model: WalletModel = "personal"
    parent_id: WalletId | None = None  # a member of an enterprise or a reseller's customer
    spend_mode: SpendMode | None = None  # a tree's root only; default allocated
    credit_limit: CreditLimit = 0
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tree_fields(self) -> CreateWallet:
        if self.model == "personal" and (self.parent_id is not None or self.spend_mode is not None):
            raise ValueError("a personal wallet has no parent and no spend mode")
        if self.parent_id is not None and self.spend_mode is not None:
            raise ValueError("spend_mode belongs to the root of a tree, not to a member")
        if self.parent_id is not None and self.credit_limit:
            raise ValueError("a member spends what it is allocated: only a root has a credit limit")
        return self


class UpdateWallet(Command):
    status: WalletStatus | None = None
    credit_limit: CreditLimit | None = None
    spend_mode: SpendMode | None = None
    # per period; null removes that period's limit
    spend_limits: Annotated[dict[Period, Amount | None], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateWallet:
        if all(value is None for value in (self.status, self.credit_limit, self.spend_mode, self.spend_limits)):
            raise ValueError("give status, credit_limit, spend_mode and/or spend_limits")
        return self


# Automation rules (docs/automation.md): the fields each kind takes, the rest it refuses,
# as the table's automation_rule_shape constraint does (db/migrations/0010_automation_rules.sql).
RuleKind = Literal["auto_topup", "low_balance", "recurring_allocation"]
RULE_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # kind: (required, optional)
    "auto_topup": (frozenset({"threshold", "amount", "funding_ref"}), frozenset()),
    "low_balance": (frozenset({"threshold"}), frozenset()),
    "recurring_allocation": (frozenset({"amount", "period"}), frozenset({"member_ids"})),
}
Threshold = Annotated[
    int, Field(ge=0, le=MAX_MINOR_UNITS, description="minor units; fires when the available balance falls below it")
]


class CreateRule(Command):
    """A rule on the wallet of the path: an auto top-up (threshold, amount charged to
    funding_ref and topped up), a low-balance notice (threshold), or a recurring
    allocation from a pool (amount to each member every period; member_ids, or every
    child of the pool)."""

    kind: RuleKind
    threshold: Threshold | None = None
    amount: Amount | None = None
    funding_ref: Text | None = None  # the payment method at the provider
    period: Literal["hour", "day", "week", "month"] | None = None
    member_ids: Annotated[list[WalletId], Field(min_length=1, max_length=1000)] | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> CreateRule:
        required, optional = RULE_FIELDS[self.kind]
        given = {
            name
            for name in ("threshold", "amount", "funding_ref", "period", "member_ids")
            if getattr(self, name) is not None
        }
        if required - given:
            raise ValueError(f"a {self.kind} rule needs {', '.join(sorted(required - given))}")
        if given - required - optional:
            raise ValueError(f"a {self.kind} rule takes no {', '.join(sorted(given - required - optional))}")
        if self.member_ids is not None and len(set(self.member_ids)) != len(self.member_ids):
            raise ValueError("member_ids names each member once")
        return self


class CreateAsset(Command):
    code: AssetCode
    scale: Scale
    description: Description = ""


class HistoryQuery(BaseModel):
    """Query-string parameters arrive as text, so this model converts (but still bounds)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    action: Action | None = None
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, StringConstraints(max_length=64)] | None = None


class WalletsQuery(BaseModel):
    """Listing an owner's wallets."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    owner_id: OwnerId


IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[ -~]*[!-~][ -~]*$")]


class TransactionLookup(BaseModel):
    """A transaction found by what its caller knows, within the caller's tenant: the
    Idempotency-Key it posted under, a top-up's or add-on's payment reference (with its
    action), or a usage id. Exactly one of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    idempotency_key: IdempotencyKey | None = None
    external_ref: Text | None = None
    action: Literal["topup", "addon"] | None = None
    usage_id: Text | None = None

    @model_validator(mode="after")
    def _one_lookup(self) -> TransactionLookup:
        given = [self.idempotency_key, self.external_ref, self.usage_id]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of idempotency_key, external_ref (with action) and usage_id")
        if (self.external_ref is None) != (self.action is None):
            raise ValueError("external_ref and action go together: a payment's reference is per top-up or add-on")
        return self
