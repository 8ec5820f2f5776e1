"""Migrations and demo data for a local database.

It knows a database only by its owner's connection parameters (a pg8000 keyword dict,
what Stack.owner_dsn() gives), not the stack around it: emulators/stack.py imports this
module, never the other way round.
"""

from __future__ import annotations

import json
from typing import Any

DEMO_ASSETS = [("IDR", 0, "Indonesian rupiah"), ("USD", 2, "US dollar"), ("GOLD", 0, "in-app gold coins")]
# (owner, asset, model, opening top-up in minor units)
DEMO_WALLETS = [
    ("alice", "IDR", "personal", 150_000),
    ("bob", "IDR", "personal", 50_000),
    ("acme-corp", "IDR", "enterprise", 5_000_000),
    ("partner-reseller", "USD", "reseller", 250_000),
    ("carol", "USD", "personal", 2_500),
    ("alice", "GOLD", "personal", 1_000),
]
# Members of the demo trees: (owner, asset, model, parent's owner, allocated from the parent)
DEMO_MEMBERS = [
    ("acme-research", "IDR", "enterprise", "acme-corp", 2_000_000),
    ("acme-research-ml", "IDR", "enterprise", "acme-research", 500_000),
    ("acme-sales", "IDR", "enterprise", "acme-corp", 1_000_000),
    ("dave", "USD", "reseller", "partner-reseller", 20_000),
]
DEMO_MONTHLY_LIMIT = ("acme-research-ml", 300_000)
DEMO_BONUS_LOT = ("alice", "IDR", 10_000, "30 days")  # a welcome bonus that expires
# The demo's callers, each with a token from the local issuer (subject = the id):
# (id, kind, tenant, owner_id, role, boundary, the root of its tree as (owner, asset))
DEMO_PRINCIPALS = [
    ("alice", "user", "alice", "alice", "customer", "own", None),
    ("acme-admin", "user", "acme", None, "enterprise_admin", "tree", ("acme-corp", "IDR")),
    ("reseller-admin", "user", "partner-reseller", None, "reseller", "tree", ("partner-reseller", "USD")),
    ("payments", "service", "payments", None, "payment_service", "all", None),
    ("metering", "service", "metering", None, "metering_service", "all", None),
    ("backoffice", "service", "backoffice", None, "back_office", "all", None),
    ("ops", "operator", "ops", None, "operator", "all", None),
    ("ops-2", "operator", "ops", None, "operator", "all", None),  # the second pair of eyes
]


def owner_url(dsn: dict[str, Any]) -> Any:
    """The owner's SQLAlchemy URL, as an object: its password is never rendered into a
    string (nor, so, into a command line or a log)."""
    from sqlalchemy.engine import URL

    return URL.create(
        "postgresql+pg8000",
        username=dsn["user"],
        password=dsn["password"],
        host=dsn["host"],
        port=dsn["port"],
        database=dsn["database"],
    )


def migrate(dsn: dict[str, Any]) -> bool:
    """`python -m db upgrade` on the database, as its owner: the pending migrations and
    the current definitions (db/schema/); returns whether the definitions were re-created.
    In-process: the owner's password goes to the driver, not into a command."""
    # imported here: alembic's import is heavy, and only migrating needs it, not every importer of the stack
    from db.upgrade import upgrade

    return upgrade(owner_url(dsn))


def owner_connection(dsn: dict[str, Any]):
    import pg8000.native

    return pg8000.native.Connection(**dsn)


def _post(con, key: str, action: str, asset: str, amount: int, source: int, target: int, **extra) -> None:
    """One demo posting through ledger.commit_posting(): `source` to `target`. Extra
    keyword arguments are the function's own optional parameters (p_external_ref, ...)."""
    named = "".join(f", {name} => :{name}" for name in extra)
    con.run(
        "SELECT ledger.commit_posting(:k, :h, :action, :a, :amt, :w, :c, CAST(:legs AS bigint[]),"
        f" CAST(:amts AS bigint[]){named})",
        k=key,
        h=json.dumps({"demo": key}),
        action=action,
        a=asset,
        amt=amount,
        w=target,
        c=source if action == "allocate" else None,
        legs=[source, target],
        amts=[-amount, amount],
        **extra,
    )


def _system_account(con, asset: str, role: str) -> int:
    return con.run(
        "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = :r AND asset_code = :a", r=role, a=asset
    )[0][0]


def _seed_trees_and_lots(con) -> None:
    """An enterprise with a division and a team (a monthly limit on the team), a
    reseller with a customer, and an expiring bonus lot."""

    def wallet_of(owner: str, asset: str) -> int:
        return con.run("SELECT id FROM ledger.wallets WHERE owner_id = :o AND asset_code = :a", o=owner, a=asset)[0][0]

    for owner, asset, model, parent_owner, allocated in DEMO_MEMBERS:
        parent = wallet_of(parent_owner, asset)
        member = con.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id) VALUES (:o, :a, :m, :p) RETURNING id",
            o=owner,
            a=asset,
            m=model,
            p=parent,
        )[0][0]
        _post(con, f"demo-allocate-{member}", "allocate", asset, allocated, parent, member)
    owner, amount = DEMO_MONTHLY_LIMIT
    con.run(
        "INSERT INTO ledger.spend_limits (wallet_id, period, amount) VALUES (:w, 'month', :a)",
        w=wallet_of(owner, "IDR"),
        a=amount,
    )
    owner, asset, amount, lifetime = DEMO_BONUS_LOT
    target = wallet_of(owner, asset)
    expires = con.run("SELECT now() + CAST(:life AS interval)", life=lifetime)[0][0]
    _post(
        con,
        f"demo-bonus-{target}",
        "bonus",
        asset,
        amount,
        _system_account(con, asset, "promotion"),
        target,
        p_external_ref="welcome",
        p_lot_expires_at=expires,
    )


def register_principal(
    con,
    principal_id: str,
    issuer: str,
    kind: str,
    tenant: str,
    owner_id: str | None = None,
    grants: list[tuple[str, str, int | None]] = (),  # type: ignore[assignment]
    subject: str | None = None,
) -> None:
    """A principal and its grants (role, boundary, root wallet), as the database owner
    does before any operator exists; once, whatever runs it again."""
    con.run(
        "INSERT INTO ledger.principals (id, issuer, subject, kind, tenant, owner_id)"
        " VALUES (:id, :iss, :sub, :kind, :tenant, :owner) ON CONFLICT DO NOTHING",
        id=principal_id,
        iss=issuer,
        sub=subject or principal_id,
        kind=kind,
        tenant=tenant,
        owner=owner_id,
    )
    for role, boundary, root in grants:
        con.run(
            "INSERT INTO ledger.grants (principal_id, role, boundary, root_wallet_id)"
            " SELECT :id, :role, :boundary, CAST(:root AS bigint) WHERE NOT EXISTS (SELECT 1 FROM ledger.grants"
            " WHERE principal_id = :id AND role = :role AND boundary = :boundary"
            " AND root_wallet_id IS NOT DISTINCT FROM CAST(:root AS bigint) AND status <> 'revoked')",
            id=principal_id,
            role=role,
            boundary=boundary,
            root=root,
        )


# The local action topics' principals (docs/messages.md): a topic is its publisher's
# identity, issuer "pubsub", subject the topic's full name. The metering topic shares
# the metering service's tenant, so a usage id posts once whether it comes over HTTP or
# as a message; the actions topic is the payment service's, with the back office's
# scopes too for the demo (bonuses and voids as messages).
TOPIC_ISSUER = "pubsub"
TOPIC_PRINCIPALS = [
    ("balance-actions", "payments", [("payment_service", "all", None), ("back_office", "all", None)]),
    ("metering-usage", "metering", [("metering_service", "all", None)]),
]


def seed_topic_principals(dsn: dict[str, Any], project: str) -> list[str]:
    """The action topics' principals (TOPIC_PRINCIPALS); returns their subjects."""
    con = owner_connection(dsn)
    try:
        subjects = []
        for topic, tenant, grants in TOPIC_PRINCIPALS:
            subject = f"projects/{project}/topics/{topic}"
            register_principal(con, topic, TOPIC_ISSUER, "service", tenant, None, grants, subject=subject)
            subjects.append(subject)
        return subjects
    finally:
        con.close()


def seed_principals(dsn: dict[str, Any], issuer: str) -> list[str]:
    """The demo's callers (DEMO_PRINCIPALS), trusted from `issuer`; returns their ids."""
    con = owner_connection(dsn)
    try:
        registered = []
        for principal_id, kind, tenant, owner_id, role, boundary, root in DEMO_PRINCIPALS:
            root_id = None
            if root is not None:
                found = con.run(
                    "SELECT id FROM ledger.wallets WHERE owner_id = :o AND asset_code = :a AND parent_id IS NULL",
                    o=root[0],
                    a=root[1],
                )
                if not found:  # a ledger without the demo's trees (seeded by something else first)
                    continue
                root_id = found[0][0]
            register_principal(con, principal_id, issuer, kind, tenant, owner_id, [(role, boundary, root_id)])
            registered.append(principal_id)
        return registered
    finally:
        con.close()


def seed_demo(dsn: dict[str, Any]) -> list[dict]:
    """Create the demo assets and wallets once; return the demo wallets."""
    con = owner_connection(dsn)
    try:
        if con.run("SELECT count(*) FROM ledger.assets")[0][0] == 0:
            for code, scale, description in DEMO_ASSETS:
                con.run("SELECT ledger.create_asset(:c, CAST(:s AS smallint), :d)", c=code, s=scale, d=description)
            for owner, asset, model, opening in DEMO_WALLETS:
                wallet_id = con.run(
                    "INSERT INTO ledger.wallets (owner_id, asset_code, model) VALUES (:o, :a, :m) RETURNING id",
                    o=owner,
                    a=asset,
                    m=model,
                )[0][0]
                funding = _system_account(con, asset, "funding")
                _post(
                    con,
                    f"demo-opening-{wallet_id}",
                    "topup",
                    asset,
                    opening,
                    funding,
                    wallet_id,
                    p_external_ref=f"demo-seed-{wallet_id}",  # a payment's reference posts once
                )
            _seed_trees_and_lots(con)
        rows = con.run(
            "SELECT id, owner_id, asset_code, model, balance FROM ledger.wallets"
            " WHERE kind = 'customer' ORDER BY id LIMIT 20"
        )
        return [dict(zip(("id", "owner_id", "asset", "model", "balance"), row, strict=True)) for row in rows]
    finally:
        con.close()
