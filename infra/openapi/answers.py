"""The shapes of the answers: the ledger's (wallets, transactions, lots, history,
roll-ups, members, assets) and the operators' API's (principals, grants, roles, pending
changes, the audit log), with the actor that postings, changes and audit rows record.

Answers are described by the keys they always carry, with their types; an answer may
carry more keys than these, so a new field does not break a client that reads the
document.
"""

from __future__ import annotations

from typing import Any

from infra.openapi.operations import ID, array, nullable, obj, ref

INT, TEXT, FLAG = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
OPTIONAL_INT, OPTIONAL_TEXT = nullable(INT), nullable(TEXT)


def answers() -> dict[str, Any]:
    entry = obj(["wallet_id", "amount", "balance_after"], wallet_id=ID, amount=INT, balance_after=OPTIONAL_INT)
    transaction = obj(
        [
            *("id", "action", "asset", "amount", "wallet_id", "counterparty_wallet_id", "idempotency_key"),
            *("external_ref", "usage_id", "product", "description", "voids_transaction_id", "metadata"),
            *("effective_at", "created_at", "actor", "entries"),
        ],
        id=ID,
        action=TEXT,
        asset=TEXT,
        amount=INT,
        wallet_id=ID,
        counterparty_wallet_id=nullable(ID),
        idempotency_key={**OPTIONAL_TEXT, "description": "null to a caller of another tenant"},
        external_ref=OPTIONAL_TEXT,
        usage_id=OPTIONAL_TEXT,
        product=OPTIONAL_TEXT,
        description=OPTIONAL_TEXT,
        voids_transaction_id=nullable(ID),
        metadata={"type": "object"},
        effective_at=TIME,
        created_at=TIME,
        actor={
            **nullable(ref("Actor")),
            "description": "who posted it; null for a row posted before callers, and to a caller bounded in what it "
            "reads when another tenant posted it",
        },
        entries=array(ref("Entry")),
    )
    spend_limit = obj(["limit", "spent", "period_start"], limit=INT, spent=INT, period_start=TIME)
    wallet = obj(
        [
            *("id", "owner_id", "asset", "scale", "kind", "system_role", "model", "status", "balance"),
            *("available", "credit_limit", "expiring", "expired", "entry_count", "metadata", "parent_id"),
            *("root_id", "depth", "spend_mode", "spend_limits", "created_at", "updated_at"),
        ],
        id=ID,
        owner_id=TEXT,
        asset=TEXT,
        scale=INT,
        kind={"enum": ["customer", "system"]},
        system_role=OPTIONAL_TEXT,
        model={"enum": ["personal", "enterprise", "reseller", "system"]},
        status={"enum": ["active", "frozen", "closed", "dormant"]},  # dormant: docs/dormancy.md
        balance=INT,
        available={**OPTIONAL_INT, "description": "balance - expired + credit_limit; null for a system account"},
        credit_limit=INT,
        expiring=INT,
        expired=INT,
        entry_count=INT,
        metadata={"type": "object"},
        parent_id=nullable(ID),
        root_id=nullable(ID),
        depth=INT,
        spend_mode=nullable({"enum": ["allocated", "shared_pool"]}),
        spend_limits={"type": "object", "additionalProperties": spend_limit},
        created_at=TIME,
        updated_at=TIME,
        pending_change_id={
            **ID,
            "description": "on a creation or change whose credit limit waits for a second operator: the "
            "pending change (the rest applied at once)",
        },
    )
    lot_keys = ("id", "wallet_id", "transaction_id", "source_lot_id", "amount", "remaining", "expires_at")
    lot = obj(
        [*lot_keys, "expired", "created_at"],
        id=ID,
        wallet_id=ID,
        transaction_id=ID,
        source_lot_id=nullable(ID),
        amount=INT,
        remaining=INT,
        expires_at=TIME,
        expired=FLAG,
        created_at=TIME,
    )
    item_keys = ("entry_id", "amount", "balance_after", "created_at", "transaction_id", "action")
    item_keys += ("transaction_amount", "transaction_wallet_id", "counterparty_wallet_id", "external_ref")
    item_keys += ("usage_id", "product", "description", "voids_transaction_id", "effective_at")
    history_item = obj(
        list(item_keys),
        entry_id=ID,
        amount=INT,
        balance_after=OPTIONAL_INT,
        created_at=TIME,
        transaction_id=ID,
        action=TEXT,
        transaction_amount=INT,
        transaction_wallet_id=ID,
        counterparty_wallet_id=nullable(ID),
        external_ref=OPTIONAL_TEXT,
        usage_id=OPTIONAL_TEXT,
        product=OPTIONAL_TEXT,
        description=OPTIONAL_TEXT,
        voids_transaction_id=nullable(ID),
        effective_at=TIME,
    )
    sums = {"balance": INT, "rollup_balance": INT, "rollup_expiring": INT, "members": INT}
    child = obj(["wallet_id", "owner_id", *sums], wallet_id=ID, owner_id=TEXT, **sums)
    return {
        **access_answers(),
        "Entry": entry,
        "Transaction": transaction,
        "Wallet": wallet,
        "Lot": lot,
        "Rule": rule_answer(),
        "Asset": obj(["code", "scale", "description"], code=TEXT, scale=INT, description=TEXT),
        "History": obj(
            ["wallet_id", "items", "next_cursor"],
            wallet_id=ID,
            items=array(history_item),
            next_cursor={**OPTIONAL_TEXT, "description": "give it as cursor for the next page; null on the last"},
        ),
        "Lots": obj(
            ["wallet_id", "balance", "available", "expiring", "expired", "no_expiry", "lots"],
            wallet_id=ID,
            balance=INT,
            available=OPTIONAL_INT,
            expiring=INT,
            expired=INT,
            no_expiry=INT,
            lots=array(ref("Lot")),
        ),
        "Rollup": obj(
            ["wallet_id", "owner_id", "asset", *sums, "children"],
            wallet_id=ID,
            owner_id=TEXT,
            asset=TEXT,
            **sums,
            children=array(child),
        ),
        "Members": obj(
            ["wallet_id", "members", "next_after"],
            wallet_id=ID,
            members=array(ref("Wallet")),
            next_after={**nullable(ID), "description": "give it as after for the next page; null on the last"},
        ),
    }


def access_answers() -> dict[str, Any]:
    """The operators' API's answers (functions/access, common/adapters/access_admin.py),
    and the actor that postings, audit rows and changes record (common/auth/callers.py)."""
    from common.auth.callers import SCOPES

    actor = {
        **obj(
            ["principal"],
            principal=TEXT,
            issuer=TEXT,
            role=OPTIONAL_TEXT,
            tenant=TEXT,
            request_id=TEXT,
            client_request_id=TEXT,
        ),
        "description": "who did it, as its token was verified: principal, issuer, role, tenant, the server's request "
        "id and the caller's own X-Request-Id when it sent one (the first operators' bootstrap records only its "
        "principal, `bootstrap:<os user>`)",
    }
    limits = {"type": "object", "description": 'per action class: {"money": {"per_second": 50, "burst": 100}}'}
    grant = obj(
        [*("id", "principal_id", "role", "scopes", "boundary", "root_wallet_id", "status"), "created_at", "updated_at"],
        id=ID,
        principal_id=TEXT,
        role=TEXT,
        scopes=array({"enum": list(SCOPES)}),
        boundary={"enum": ["own", "tree", "all"]},
        root_wallet_id=nullable(ID),
        status={"enum": ["pending", "active", "revoked"]},
        created_at=TIME,
        updated_at=TIME,
        pending_change_id={**ID, "description": "on a new grant that waits for a second operator: its change"},
    )
    principal = obj(
        [*("id", "issuer", "subject", "kind", "tenant", "owner_id", "status", "rate_limits", "description")]
        + ["created_at", "updated_at"],
        id=TEXT,
        issuer=TEXT,
        subject=TEXT,
        kind={"enum": ["service", "user", "operator"]},
        tenant=TEXT,
        owner_id=OPTIONAL_TEXT,
        status={"enum": ["active", "disabled"]},
        rate_limits={**nullable(limits), "description": "an override of its roles' rate limits, or null"},
        description=TEXT,
        created_at=TIME,
        updated_at=TIME,
    )
    role = obj(
        ["name", "scopes", "rate_limits", "description", "updated_at"],
        name=TEXT,
        scopes=array({"enum": list(SCOPES)}),
        rate_limits=limits,
        description=TEXT,
        updated_at=TIME,
    )
    change = obj(
        [*("id", "kind", "target", "change", "reason", "status"), *("requested_by", "requested_at")]
        + ["decided_by", "decided_at"],
        id=ID,
        kind={"enum": ["credit_limit", "grant"]},
        target={**TEXT, "description": "`wallet:<id>` or `principal:<id>`"},
        change={"type": "object", "description": "what applies on approval"},
        reason=OPTIONAL_TEXT,
        status={"enum": ["pending", "approved", "rejected"]},
        requested_by=ref("Actor"),
        requested_at=TIME,
        decided_by=nullable(ref("Actor")),
        decided_at=nullable(TIME),
    )
    record = obj(
        ["id", "at", "actor", "action", "target", "before", "after", "reason"],
        id=ID,
        at=TIME,
        actor=ref("Actor"),
        action={**TEXT, "description": "e.g. `principal.create`, `grant.revoke`, `wallet.update`"},
        target={**TEXT, "description": "e.g. `principal:alice`, `wallet:16`, `change:3`"},
        before={"description": "the target's state before; null for a creation"},
        after={"description": "the target's state after"},
        reason=OPTIONAL_TEXT,
    )

    def page(name: str, item: str, next_id: dict[str, Any]) -> dict[str, Any]:
        next_ = {**nullable(next_id), "description": "give it as after for the next page; null on the last"}
        return obj([name, "next"], **{name: array(ref(item)), "next": next_})

    return {
        "Actor": actor,
        "Principal": principal,
        "Grant": grant,
        "Role": role,
        "Change": change,
        "AuditRecord": record,
        "Principals": page("principals", "Principal", TEXT),
        "Changes": page("changes", "Change", ID),
        "AuditLog": page("audit", "AuditRecord", ID),
    }


def rule_answer() -> dict[str, Any]:
    """An automation rule (docs/automation.md): the fields its kind does not take are null."""
    return obj(
        [
            *("id", "tenant", "kind", "wallet_id", "asset", "threshold", "amount", "funding_ref", "period"),
            *("member_ids", "status", "armed", "metadata", "created_by", "created_at", "updated_at"),
        ],
        id=ID,
        tenant=TEXT,
        kind={"enum": ["auto_topup", "low_balance", "recurring_allocation"]},
        wallet_id={**ID, "description": "the wallet watched, or a recurring allocation's pool"},
        asset={**TEXT, "description": "the wallet's asset: the unit of threshold and amount"},
        threshold=OPTIONAL_INT,
        amount=OPTIONAL_INT,
        funding_ref=OPTIONAL_TEXT,
        period=nullable({"enum": ["hour", "day", "week", "month"]}),
        member_ids={**nullable(array(ID)), "description": "null: every child of the pool, at each period"},
        status={"enum": ["active", "paused", "deleted"]},
        armed={
            **FLAG,
            "description": "a threshold rule fires once per crossing: false from its firing until the "
            "balance is back at or above the threshold, or the rule is resumed",
        },
        metadata={"type": "object"},
        created_by=ref("Actor"),
        created_at=TIME,
        updated_at=TIME,
    )
