"""Dormancy policies in Postgres (ledger.dormancy_policies): listed, and set through
ledger.dormancy_set_policy() (db/schema/86_dormancy.sql), which audits the change.
The operator's login reads and sets them (99_grants.sql); nothing else does."""

from __future__ import annotations

import json
from typing import Any

from common.adapters.postgres import Pool, run_with_retry

COLUMNS = ("asset", "model", "inactivity", "warning", "action", "reactivation", "updated_at")


class DormancyPolicies:
    def __init__(self, pool: Pool, attempts: int = 3) -> None:
        self._pool = pool
        self._attempts = attempts

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        return run_with_retry(self._pool, lambda con: con.run(sql, **params), self._attempts)

    def list(self) -> list[dict[str, Any]]:
        # intervals as whole days (the CLI's unit) or as Postgres writes them otherwise
        rows = self._run(
            "SELECT asset_code, model,"
            " CASE WHEN inactivity = make_interval(days => extract(day FROM inactivity)::int)"
            " THEN extract(day FROM inactivity)::int || 'd' ELSE inactivity::text END,"
            " CASE WHEN warning = make_interval(days => extract(day FROM warning)::int)"
            " THEN extract(day FROM warning)::int || 'd' ELSE warning::text END,"
            " action, reactivation, ledger.iso_utc(updated_at)"
            " FROM ledger.dormancy_policies ORDER BY asset_code, model"
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def assets(self) -> set[str]:
        return {row[0] for row in self._run("SELECT code FROM ledger.assets")}

    def set(
        self,
        asset: str,
        model: str,
        inactivity_days: int,
        warning_days: int,
        action: str,
        reactivation: str,
        actor: dict[str, Any],
    ) -> None:
        self._run(
            "SELECT ledger.dormancy_set_policy(:a, :m, make_interval(days => :i), make_interval(days => :w),"
            " :act, :re, CAST(:actor AS jsonb))",
            a=asset,
            m=model,
            i=inactivity_days,
            w=warning_days,
            act=action,
            re=reactivation,
            actor=json.dumps(actor),
        )
