"""Use cases: every balance action, wallet admin and reads.

Each money-moving action runs inside the idempotency protocol, builds its posting with
the pure rules in `common.ledger.postings`, and posts it in one call to Postgres.
Usage additionally holds the wallet's Redis lock while it posts. Admin writes go to
`LedgerAdmin`, and every read, a changed wallet's or lot's included, to `LedgerQueries`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.errors import Refused
from common.idempotency import Idempotency, Outcome, fingerprint, validate_key
from common.ledger import postings

if TYPE_CHECKING:  # adapters load with their clients, models with the first parsed body (cold starts)
    from common.adapters.ledger_admin import LedgerAdmin
    from common.adapters.ledger_queries import LedgerQueries
    from common.adapters.ledger_store import PostgresLedger
    from common.adapters.redis_locks import RedisLocks
    from common.ledger import commands

CREATED = 201
log = logging.getLogger("ledger.service")


class LedgerService:
    def __init__(
        self,
        ledger: PostgresLedger,
        admin: LedgerAdmin,
        queries: LedgerQueries,
        idempotency: Callable[[], Idempotency],
        locks: Callable[[], RedisLocks],
        committed: Callable[[int], None] = lambda transaction_id: None,
    ) -> None:
        self.ledger = ledger
        self.admin = admin
        self.queries = queries
        self._idempotency = idempotency  # built on first use: reads never touch Firestore
        self._locks = locks  # built on first use: only usage needs Redis
        # Told each new transaction's id once it is committed: the event relay. Its event
        # is already in the outbox; this only publishes it sooner than the sweeper would.
        self._committed = committed

    # Balance actions --------------------------------------------------------

    def top_up(self, cmd: commands.TopUp, key: str | None) -> Outcome:
        return self._post_once("topup", cmd, key, lambda: postings.top_up(cmd, self.ledger.system_accounts(cmd.asset)))

    def add_on(self, cmd: commands.AddOn, key: str | None) -> Outcome:
        return self._post_once("addon", cmd, key, lambda: postings.add_on(cmd, self.ledger.system_accounts(cmd.asset)))

    def bonus(self, cmd: commands.Bonus, key: str | None) -> Outcome:
        return self._post_once("bonus", cmd, key, lambda: postings.bonus(cmd, self.ledger.system_accounts(cmd.asset)))

    def allocate(self, cmd: commands.Allocate, key: str | None) -> Outcome:
        return self._post_once(
            "allocate", cmd, key, lambda: postings.allocate(cmd, self.ledger.parent_of(cmd.wallet_id))
        )

    def reclaim(self, cmd: commands.Reclaim, key: str | None) -> Outcome:
        return self._post_once("reclaim", cmd, key, lambda: postings.reclaim(cmd, self.ledger.parent_of(cmd.wallet_id)))

    def usage(self, cmd: commands.Usage, key: str | None) -> Outcome:
        return self._post_once(
            "usage",
            cmd,
            key,
            lambda: postings.usage(cmd, self.ledger.system_accounts(cmd.asset)),
            lock_wallet=cmd.wallet_id,
        )

    def transfer(self, cmd: commands.Transfer, key: str | None) -> Outcome:
        return self._post_once("transfer", cmd, key, lambda: postings.transfer(cmd))

    def void(self, cmd: commands.Void, key: str | None) -> Outcome:
        def build() -> postings.Posting:
            original = self.queries.get_transaction(cmd.transaction_id)
            retry_of_this_void = (
                original["voided_by"] is not None
                and self.queries.get_transaction(original["voided_by"])["idempotency_key"] == key
            )
            return postings.reversal(original, cmd, retry_of_this_void=retry_of_this_void)

        return self._post_once(
            "void", cmd, key, build, refusal=lambda error: postings.void_refusal(error, cmd.transaction_id)
        )

    def _post_once(
        self,
        action: str,
        cmd: commands.Command,
        key: str | None,
        build: Callable[[], postings.Posting],
        lock_wallet: int | None = None,
        refusal: Callable[[Refused], Refused] = lambda error: error,
    ) -> Outcome:
        key = validate_key(key)
        request_hash = fingerprint(action, cmd.model_dump(mode="json"))

        def committed() -> Outcome | None:
            transaction = self.ledger.posted_under(key, request_hash)
            return None if transaction is None else Outcome(CREATED, {"transaction": transaction}, replayed=True)

        def post() -> Outcome:
            try:
                posting = build()
                if lock_wallet is None:
                    transaction, replayed = self.ledger.post(posting, key, request_hash)
                else:
                    with self._locks().wallet(lock_wallet):
                        transaction, replayed = self.ledger.post(posting, key, request_hash)
            except Refused as error:
                # Another copy of this request may have posted meanwhile (a takeover, or two
                # voids of one transaction racing): then its posting is the answer.
                posted = committed()
                if posted is not None:
                    return posted
                # translated before the idempotency record stores it, so replays match
                raise refusal(error) from error
            if not replayed:
                self._tell_committed(transaction["id"])
            return Outcome(CREATED, {"transaction": transaction}, replayed=replayed)

        return self._idempotency().run(key, request_hash, post, committed)

    def _tell_committed(self, transaction_id: int) -> None:
        try:
            self._committed(transaction_id)
        except Exception:  # noqa: BLE001 - the posting stands; its event waits in the outbox
            log.warning("after-commit hook failed", exc_info=True, extra={"transaction_id": transaction_id})

    # Reads and admin ---------------------------------------------------------

    def get_transaction(self, transaction_id: int) -> dict[str, Any]:
        return self.queries.get_transaction(transaction_id)

    def create_wallet(self, cmd: commands.CreateWallet) -> dict[str, Any]:
        return self.queries.get_wallet(self.admin.create_wallet(cmd))

    def get_wallet(self, wallet_id: int) -> dict[str, Any]:
        return self.queries.get_wallet(wallet_id)

    def list_wallets(self, owner_id: str) -> list[dict[str, Any]]:
        return self.queries.list_wallets(owner_id)

    def update_wallet(self, wallet_id: int, cmd: commands.UpdateWallet) -> dict[str, Any]:
        self.admin.update_wallet(wallet_id, cmd)
        return self.queries.get_wallet(wallet_id)

    def history(self, wallet_id: int, query: commands.HistoryQuery) -> dict[str, Any]:
        return self.queries.history(wallet_id, query)

    def rollup(self, wallet_id: int) -> dict[str, Any]:
        return self.queries.rollup(wallet_id)

    def members(self, wallet_id: int, after: int, limit: int) -> dict[str, Any]:
        return self.queries.members(wallet_id, after, limit)

    def lots(self, wallet_id: int, include_closed: bool = False) -> dict[str, Any]:
        return self.queries.lots(wallet_id, include_closed)

    def get_lot(self, lot_id: int) -> dict[str, Any]:
        return self.queries.get_lot(lot_id)

    def extend_lot(self, lot_id: int, cmd: commands.ExtendLot, key: str | None) -> Outcome:
        """Not a money movement: the database keeps one extension per key, so a retry
        (or a racing copy) answers with the same lot and posts nothing twice."""
        replayed = self.admin.extend_lot(validate_key(key), lot_id, cmd)
        return Outcome(200, {"lot": self.queries.get_lot(lot_id)}, replayed=replayed)

    def expire_lots(self, batch: int = 50, budget: int = 100_000) -> dict[str, int]:
        """The expiry job: every due lot becomes breakage, a batch per call, until none
        is due or `budget` lots were handled. A lot that fails is logged and left for
        the next run, behind no other; so is one whose wallet a posting holds."""
        expired = failed = busy = amount = 0
        after: tuple[str, int] | None = None
        while expired + failed + busy < budget:
            outcomes = self.ledger.expire_lots(batch, after)
            # a page comes back in wallet order; the next starts after its last in expiry order
            after = max(((o["expires_at"], o["lot_id"]) for o in outcomes), default=after)
            for outcome in outcomes:
                if outcome["error"] == "wallet_busy":
                    busy += 1  # a posting holds the wallet: the next run takes this lot
                elif outcome["error"]:
                    failed += 1
                    log.error("lot expiry failed", extra=outcome)
                elif outcome["transaction_id"] is not None:
                    expired += 1
                    amount += outcome["amount"]
                    self._tell_committed(outcome["transaction_id"])
            if len(outcomes) < batch:
                break
        return {"expired": expired, "failed": failed, "busy": busy, "amount": amount}

    def create_asset(self, cmd: commands.CreateAsset) -> dict[str, Any]:
        return self.admin.create_asset(cmd)

    def list_assets(self) -> list[dict[str, Any]]:
        return self.queries.list_assets()
