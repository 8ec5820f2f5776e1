"""The ledger's writes that move no money: assets (with their system accounts), wallets
and their status, limits and spend mode, and later expiries for lots.

Apart from the postings (common/adapters/ledger_store.py): none of these goes through
ledger.commit_posting() or group commit. The database's constraints have the last
word; these refuse first, with clearer errors, and name the constraint's refusals.
A write answers no more than what it decided (an id, a replay); the service reads the
changed wallet or lot back through common/adapters/ledger_queries.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pg8000.exceptions import DatabaseError

from common.adapters.postgres import Statements, error_fields, run_with_retry
from common.errors import DependencyUnavailable, LedgerError, NotFound, Refused

if TYPE_CHECKING:  # annotations only: the command models load with the first parsed body
    from common.ledger import commands


class LedgerAdmin(Statements):
    """Every write goes through an audited procedure (db/schema/75_access.sql), which
    records `actor` with the change."""

    # Assets ---------------------------------------------------------------

    def create_asset(self, cmd: commands.CreateAsset, actor: dict[str, Any]) -> dict[str, Any]:
        try:
            self._run(
                "SELECT ledger.create_asset(:code, CAST(:scale AS smallint), :description, CAST(:actor AS jsonb))",
                code=cmd.code,
                scale=cmd.scale,
                description=cmd.description,
                actor=json.dumps(actor),
            )
        except DatabaseError as error:
            if error_fields(error).get("C") == "23505":
                raise Refused(f"asset {cmd.code} already exists", code="asset_exists") from error
            raise
        return {"code": cmd.code, "scale": cmd.scale, "description": cmd.description}

    # Wallets --------------------------------------------------------------

    def create_wallet(
        self, cmd: commands.CreateWallet, actor: dict[str, Any], marks: dict[str, Any] | None = None
    ) -> tuple[int, int | None]:
        """The new wallet's id, and the pending change holding its credit limit when
        that is above the dual-control threshold. `marks`: metadata no caller may set
        (commands.RESERVED_METADATA), from a bulk migration."""
        if cmd.parent_id is not None:
            self._check_parent(cmd)
        try:
            rows = self._run(
                "SELECT wallet_id, pending_change_id FROM ledger.create_wallet(:owner_id, :asset, :model,"
                " CAST(:credit_limit AS bigint), CAST(:metadata AS jsonb), CAST(:parent_id AS bigint), :spend_mode,"
                " CAST(:actor AS jsonb))",
                owner_id=cmd.owner_id,
                asset=cmd.asset,
                model=cmd.model,
                credit_limit=cmd.credit_limit,
                metadata=json.dumps({**cmd.metadata, **(marks or {})}),
                parent_id=cmd.parent_id,
                spend_mode=cmd.spend_mode,
                actor=json.dumps(actor),
            )
        except DatabaseError as error:
            fields = error_fields(error)
            if fields.get("n") == "wallets_tree_depth":
                raise Refused("a tree is at most 8 levels deep", code="tree_too_deep") from error
            if fields.get("C") == "23503" and fields.get("n") != "wallets_parent":
                raise Refused(
                    f"unknown asset {cmd.asset}", code="unknown_asset", details={"asset": cmd.asset}
                ) from error
            raise
        return int(rows[0][0]), rows[0][1]

    def create_wallets(
        self, cmds: Sequence[commands.CreateWallet], actor: dict[str, Any], marks: dict[str, Any]
    ) -> list[int] | None:
        """Many wallets in one call (ledger.create_wallets(): each made and audited by
        create_wallet(), no credit limit), their ids in order. All or none: None when
        the database refused one, and then nothing was made; create them one at a time
        (create_wallet) to learn which and why. Parents are the caller's to check (a
        bulk migration's pre-flight does)."""
        specs = [
            {
                "owner_id": cmd.owner_id,
                "asset": cmd.asset,
                "model": cmd.model,
                "parent_id": cmd.parent_id,
                "metadata": {**cmd.metadata, **marks},
            }
            for cmd in cmds
        ]
        sql = "SELECT item, wallet_id FROM ledger.create_wallets(CAST(:specs AS jsonb), CAST(:actor AS jsonb))"
        try:
            # Once: a call whose connection was lost after it committed, made again, would
            # make the wallets twice; a restart of the migration finds them instead.
            rows = run_with_retry(
                self._pool, lambda con: con.run(sql, specs=json.dumps(specs), actor=json.dumps(actor)), 1
            )
        except DependencyUnavailable:
            raise
        except (DatabaseError, LedgerError):
            return None
        return [int(wallet_id) for _, wallet_id in sorted(rows)]

    def _check_parent(self, cmd: commands.CreateWallet) -> None:
        """Clear refusals for what the database's tree constraints would refuse anyway."""
        rows = self._run("SELECT asset_code, model, kind FROM ledger.wallets WHERE id = :id", id=cmd.parent_id)
        if not rows:
            raise Refused(
                f"parent wallet {cmd.parent_id} does not exist",
                code="parent_not_found",
                details={"parent_id": cmd.parent_id},
            )
        asset, model, kind = rows[0]
        if kind != "customer" or model != cmd.model or asset != cmd.asset:
            raise Refused(
                "a member's parent has the member's asset and model (enterprise or reseller)",
                code="parent_mismatch",
                details={"parent_id": cmd.parent_id, "parent_asset": asset, "parent_model": model},
            )

    def update_wallet(self, wallet_id: int, cmd: commands.UpdateWallet, actor: dict[str, Any]) -> int | None:
        """The change applied in one audited call; the id of the pending change when a
        credit limit raised above the dual-control threshold waits for approval."""
        rows = self._run("SELECT kind, status, spend_mode, parent_id FROM ledger.wallets WHERE id = :id", id=wallet_id)
        if not rows:
            raise NotFound(
                f"wallet {wallet_id} does not exist", code="wallet_not_found", details={"wallet_id": wallet_id}
            )
        kind, status, spend_mode, parent_id = rows[0]
        if kind == "system":
            raise Refused("system accounts cannot be changed", code="system_account")
        if status == "closed" and (
            cmd.status not in (None, "closed") or (cmd.credit_limit, cmd.spend_mode, cmd.spend_limits) != (None,) * 3
        ):
            raise Refused(
                "a closed wallet stays closed and takes no change",
                code="wallet_closed",
                details={"wallet_id": wallet_id},
            )
        if cmd.spend_mode is not None and spend_mode is None:
            raise Refused(
                "only the root of an enterprise or reseller tree has a spend mode",
                code="not_a_root",
                details={"wallet_id": wallet_id},
            )
        if cmd.credit_limit and parent_id is not None:
            raise Refused(
                "a member spends what it is allocated: only a root has a credit limit",
                code="member_credit_limit",
                details={"wallet_id": wallet_id},
            )
        try:
            rows = self._run(
                "SELECT ledger.update_wallet(:id, :status, CAST(:credit_limit AS bigint), :spend_mode,"
                " CAST(:spend_limits AS jsonb), CAST(:actor AS jsonb))",
                id=wallet_id,
                status=cmd.status,
                credit_limit=cmd.credit_limit,
                spend_mode=cmd.spend_mode,
                spend_limits=json.dumps(cmd.spend_limits) if cmd.spend_limits else None,
                actor=json.dumps(actor),
            )
        except DatabaseError as error:
            constraint = error_fields(error).get("n")
            if constraint == "wallets_closed_is_empty":
                raise Refused(
                    "only an empty wallet can be closed", code="wallet_not_empty", details={"wallet_id": wallet_id}
                ) from error
            if constraint == "wallets_balance_within_limit":
                raise Refused(
                    "the balance is below the new credit limit",
                    code="credit_limit_below_balance",
                    details={"wallet_id": wallet_id},
                ) from error
            raise
        return rows[0][0]

    # Lots -------------------------------------------------------------------

    def extend_lot(self, key: str, lot_id: int, cmd: commands.ExtendLot, tenant: str, actor: dict[str, Any]) -> bool:
        """Move a lot's expiry later, once per idempotency key of the tenant; True when
        the key had already done so (a replay)."""
        rows = self._run(
            "SELECT extension_id, replayed FROM ledger.extend_lot(:k, :id, CAST(:at AS timestamptz), :reason,"
            " :tenant, CAST(:actor AS jsonb))",
            k=key,
            id=lot_id,
            at=cmd.expires_at.isoformat(),
            reason=cmd.reason,
            tenant=tenant,
            actor=json.dumps(actor),
        )
        return bool(rows[0][1])
