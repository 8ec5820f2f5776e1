"""Use cases: every balance action, wallet admin and reads.

Each money-moving action runs inside the idempotency protocol, builds its posting with
the pure rules in `common.ledger.postings`, and posts it in one call to Postgres.
Usage additionally holds the wallet's Redis lock while it posts. Admin writes go to
`LedgerAdmin`, and every read, a changed wallet's or lot's included, to `LedgerQueries`.

Every use case takes the verified `Caller` first and authorizes it before anything
else happens (common/auth/callers.py): no idempotency key is claimed and nothing is
read or written for a caller without the scope, or on a wallet outside its boundary.
A transaction answer (a money action's, its replay's, a read's) is shown to a caller
bounded in what it reads as `as_seen_by` allows: no balance outside its boundary, no
other tenant's actor or key.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.auth.callers import Caller, Grant, WalletFacts, as_seen_by, authorize, visible, within
from common.automation_rules import AutomationRules
from common.cursors import Cursors, history_scope
from common.errors import (
    AlreadyPosted,
    DependencyUnavailable,
    Forbidden,
    InvalidRequest,
    LedgerError,
    NotFound,
    Refused,
)
from common.idempotency import Idempotency, Outcome, fingerprint, validate_key
from common.intake import (
    IntakeResult,
    RecordOutcome,
    already_posted,
    decided_outcome,
    problems,
    repeated_outcome,
    usage_key,
)
from common.ledger import postings
from common.pacing import Pacer, unpaced

if TYPE_CHECKING:  # adapters load with their clients, models with the first parsed body (cold starts)
    from common.adapters.access_store import AccessStore
    from common.adapters.ledger_admin import LedgerAdmin
    from common.adapters.ledger_queries import LedgerQueries
    from common.adapters.ledger_store import PostgresLedger
    from common.adapters.redis_locks import RedisLocks
    from common.adapters.rule_store import RuleStore
    from common.ledger import commands

CREATED = 201
log = logging.getLogger("ledger.service")


class LedgerService(AutomationRules):
    def __init__(
        self,
        ledger: PostgresLedger,
        admin: LedgerAdmin,
        queries: LedgerQueries,
        idempotency: Callable[[], Idempotency],
        locks: Callable[[], RedisLocks],
        committed: Callable[[int], None] = lambda transaction_id: None,
        access: AccessStore | None = None,
        transfers_to_anyone: bool = False,
        cursors: Callable[[], Cursors] | None = None,
        rules: RuleStore | None = None,
    ) -> None:
        self.ledger = ledger
        self.admin = admin
        self.queries = queries
        self._idempotency = idempotency  # built on first use: reads never touch Firestore
        self._locks = locks  # built on first use: only usage needs Redis
        # Told each new transaction's id once it is committed: the event relay. Its event
        # is already in the outbox; this only publishes it sooner than the sweeper would.
        self._committed = committed
        self._access = access
        self._transfers_to_anyone = transfers_to_anyone
        # Built on first use: only history pages sign cursors, and only the wallets
        # function is given the shared key (Google Cloud refuses to build them without
        # it). In-process stand-ins (tests) page within one process: a key of their own.
        if cursors is None:
            own = Cursors(secrets.token_bytes(32))
            cursors = lambda: own  # noqa: E731 - one key for this service's lifetime
        self._cursors = cursors
        self._rules = rules  # automation rules (common/automation_rules.py)

    # Balance actions --------------------------------------------------------

    def top_up(self, caller: Caller, cmd: commands.TopUp, key: str | None) -> Outcome:
        grant = self._authorize(caller, "topup", [cmd.wallet_id])
        return self._post_once(
            caller, grant, "topup", cmd, key, lambda: postings.top_up(cmd, self.ledger.system_accounts(cmd.asset))
        )

    def add_on(self, caller: Caller, cmd: commands.AddOn, key: str | None) -> Outcome:
        grant = self._authorize(caller, "topup", [cmd.wallet_id])
        return self._post_once(
            caller, grant, "addon", cmd, key, lambda: postings.add_on(cmd, self.ledger.system_accounts(cmd.asset))
        )

    def bonus(self, caller: Caller, cmd: commands.Bonus, key: str | None) -> Outcome:
        grant = self._authorize(caller, "bonus", [cmd.wallet_id])
        return self._post_once(
            caller, grant, "bonus", cmd, key, lambda: postings.bonus(cmd, self.ledger.system_accounts(cmd.asset))
        )

    def allocate(self, caller: Caller, cmd: commands.Allocate, key: str | None) -> Outcome:
        grant = self._authorize_edge(caller, cmd.wallet_id)
        return self._post_once(
            caller, grant, "allocate", cmd, key, lambda: postings.allocate(cmd, self.ledger.parent_of(cmd.wallet_id))
        )

    def reclaim(self, caller: Caller, cmd: commands.Reclaim, key: str | None) -> Outcome:
        grant = self._authorize_edge(caller, cmd.wallet_id)
        return self._post_once(
            caller, grant, "reclaim", cmd, key, lambda: postings.reclaim(cmd, self.ledger.parent_of(cmd.wallet_id))
        )

    def usage(self, caller: Caller, cmd: commands.Usage, key: str | None) -> Outcome:
        grant = self._authorize(caller, "usage", [cmd.wallet_id])
        return self._post_once(
            caller,
            grant,
            "usage",
            cmd,
            key,
            lambda: postings.usage(cmd, self.ledger.system_accounts(cmd.asset)),
            lock_wallet=cmd.wallet_id,
        )

    def usage_batch(self, caller: Caller, records: list[Any]) -> IntakeResult:
        """One outcome per usage record of a bulk message, in order (common/intake.py),
        posted together: ledger.commit_postings() calls of up to MAX_POSTINGS_PER_CALL
        records, each record under the key its usage id derives (usage_key). No
        Firestore record and no Redis lock per record: a usage id posts once per tenant
        by the database's own index, and what was decided before is one query
        (docs/messages.md#bulk-usage-intake, docs/decisions.md on the locks)."""
        from common.adapters.ledger_store import MAX_POSTINGS_PER_CALL, posting_params

        outcomes: dict[int, RecordOutcome] = {}
        firsts: dict[str, _Record] = {}  # the first valid record of each usage id
        repeats: list[_Record] = []
        for index, record in enumerate(records):
            parsed = _parse_usage(index, record)
            if isinstance(parsed, RecordOutcome):
                outcomes[index] = parsed
            elif parsed.cmd.usage_id in firsts:
                repeats.append(parsed)
            else:
                firsts[parsed.cmd.usage_id] = parsed

        pending = self._authorize_records(caller, list(firsts.values()), outcomes)
        try:
            decided = self.ledger.usage_decisions(caller.tenant, [r.cmd.usage_id for r in pending])
        except DependencyUnavailable as error:
            decided, pending = {}, _retry(pending, error, outcomes)
        to_post: list[tuple[_Record, dict[str, Any]]] = []
        for record in pending:
            earlier = decided.get(record.cmd.usage_id)
            if earlier is not None:
                outcomes[record.index] = decided_outcome(record.index, record.cmd.usage_id, record.hash, earlier)
                continue
            try:
                posting = postings.usage(record.cmd, self.ledger.system_accounts(record.cmd.asset))
            except LedgerError as error:
                outcomes[record.index] = _failed(record, error)
                continue
            params = posting_params(posting, usage_key(record.cmd.usage_id), record.hash, caller.tenant, record.actor)
            to_post.append((record, params))

        db_calls = 0
        refused: list[tuple[_Record, Refused]] = []
        for start in range(0, len(to_post), MAX_POSTINGS_PER_CALL):
            chunk = to_post[start : start + MAX_POSTINGS_PER_CALL]
            db_calls += 1
            try:
                results, calls = self.ledger.post_batch([params for _, params in chunk])
            except DependencyUnavailable as error:
                # Nothing of this chunk is known to have posted (OutcomeUnknown: some may
                # have): its records retry, and their redelivery replays what did commit.
                # A database that is down would fail every later chunk too: they retry
                # as well, untried. Wallets held elsewhere (database_busy) hold this chunk only.
                down = error.code != "database_busy"
                _retry([record for record, _ in (to_post[start:] if down else chunk)], error, outcomes)
                if down:
                    break
                continue
            db_calls += calls - 1
            for (record, _), result in zip(chunk, results, strict=True):
                if not isinstance(result, Exception):
                    replayed, transaction_id = result[0], result[1]
                    if not replayed:
                        self._tell_committed(transaction_id)
                    status = "replayed" if replayed else "posted"  # replayed: a racing copy posted it
                    outcomes[record.index] = RecordOutcome(
                        record.index, record.cmd.usage_id, status, transaction_id=transaction_id
                    )
                elif isinstance(result, Refused) and result.code != "idempotency_key_reused":
                    refused.append((record, result))  # final: kept, so the id gets it again
                else:
                    outcomes[record.index] = _failed(record, result)

        if refused:
            try:
                stands = self.ledger.record_usage_refusals(
                    caller.tenant, [(record.cmd.usage_id, record.hash, error) for record, error in refused]
                )
            except DependencyUnavailable as error:
                # not kept: the id could post on its next delivery, so the outcome is not final yet
                _retry([record for record, _ in refused], error, outcomes)
            else:
                for record, _ in refused:
                    usage_id = record.cmd.usage_id
                    outcomes[record.index] = decided_outcome(record.index, usage_id, record.hash, stands[usage_id])

        for record in repeats:
            first = firsts[record.cmd.usage_id]
            outcomes[record.index] = repeated_outcome(record.index, outcomes[first.index], record.hash == first.hash)
        return IntakeResult([outcomes[index] for index in range(len(records))], db_calls)

    def _authorize_records(
        self, caller: Caller, records: list[_Record], outcomes: dict[int, RecordOutcome]
    ) -> list[_Record]:
        """Each record's grant, with one wallet-facts query for the whole batch; the
        records the caller may not post get `forbidden` (a wallet outside the boundary
        with the wallet's 404 code, as HTTP hides it). Answers the records allowed."""
        allowed: list[_Record] = []
        facts: dict[int, WalletFacts] = {}
        if records and caller.grants_with("usage") and caller.unbounded("usage") is None:
            try:
                facts = self._facts(list(dict.fromkeys(r.cmd.wallet_id for r in records)))
            except DependencyUnavailable as error:
                _retry(records, error, outcomes)
                return []
        for record in records:
            try:
                grant = authorize(caller, "usage", [record.cmd.wallet_id], lambda _ids: facts)
            except (Forbidden, NotFound) as error:
                outcomes[record.index] = _failed(record, error)
                continue
            allowed.append(_Record(record.index, record.cmd, record.hash, caller.actor(grant)))
        return allowed

    def transfer(self, caller: Caller, cmd: commands.Transfer, key: str | None) -> Outcome:
        # Both ends inside one grant's boundary (an owner's own wallets, a tree's members),
        # unless the deployment lets customers pay anyone (transfers_to_anyone): then only
        # the payer's wallet is, at the price of a payee's existence being probeable (a
        # wallet in a tree answers 422 transfer_outside_tree, a missing one 404). The
        # database keeps transfers within a tree or between personal wallets either way.
        ends = [cmd.from_wallet_id] if self._transfers_to_anyone else [cmd.from_wallet_id, cmd.to_wallet_id]
        grant = self._authorize(caller, "transfer", ends)
        return self._post_once(caller, grant, "transfer", cmd, key, lambda: postings.transfer(cmd))

    def void(self, caller: Caller, cmd: commands.Void, key: str | None) -> Outcome:
        grant = self._authorize_transaction(caller, "void", cmd.transaction_id)

        def build() -> postings.Posting:
            original = self.queries.get_transaction(cmd.transaction_id)
            voiding = None if original["voided_by"] is None else self.queries.get_transaction(original["voided_by"])
            retry_of_this_void = (
                voiding is not None
                and voiding["idempotency_key"] == key
                and (voiding["actor"] or {}).get("tenant", "") == caller.tenant
            )
            return postings.reversal(original, cmd, retry_of_this_void=retry_of_this_void)

        return self._post_once(
            caller,
            grant,
            "void",
            cmd,
            key,
            build,
            refusal=lambda error: postings.void_refusal(error, cmd.transaction_id),
        )

    def _post_once(
        self,
        caller: Caller,
        grant: Grant,
        action: str,
        cmd: commands.Command,
        key: str | None,
        build: Callable[[], postings.Posting],
        lock_wallet: int | None = None,
        refusal: Callable[[Refused], Refused] = lambda error: error,
    ) -> Outcome:
        key = validate_key(key)
        request_hash = fingerprint(action, cmd.model_dump(mode="json"))
        tenant, actor = caller.tenant, caller.actor(grant)

        business_id = _business_id(action, cmd)

        def committed() -> Outcome | None:
            transaction = self.ledger.posted_under(tenant, key, request_hash)
            if transaction is None and business_id is not None:
                # sent again under a new key, this request was answered with the posting
                # of its business id: so is every retry under that key
                transaction = self.ledger.posted_for(tenant, action, business_id, request_hash)
            return None if transaction is None else Outcome(CREATED, {"transaction": transaction}, replayed=True)

        def post() -> Outcome:
            try:
                posting = build()
                if lock_wallet is None:
                    transaction, replayed = self.ledger.post(posting, key, request_hash, tenant, actor)
                else:
                    with self._locks().wallet(lock_wallet):
                        transaction, replayed = self.ledger.post(posting, key, request_hash, tenant, actor)
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

        outcome = self._idempotency().run(key, request_hash, post, committed, scope=tenant)
        return self._shown(caller, outcome)

    def _shown(self, caller: Caller, outcome: Outcome) -> Outcome:
        """The answer as this caller may see it: redacted here, not where the outcome is
        kept, since a replay may come from a colleague of the tenant with other grants."""
        transaction = outcome.body.get("transaction")
        if transaction is None or caller.unbounded("read") is not None:
            return outcome
        body = {**outcome.body, "transaction": as_seen_by(caller, transaction, self._facts)}
        return Outcome(outcome.status, body, replayed=outcome.replayed)

    def _tell_committed(self, transaction_id: int) -> None:
        try:
            self._committed(transaction_id)
        except Exception:  # noqa: BLE001 - the posting stands; its event waits in the outbox
            log.warning("after-commit hook failed", exc_info=True, extra={"transaction_id": transaction_id})

    # Authorization -------------------------------------------------------------

    def _facts(self, wallet_ids: list[int]) -> dict[int, WalletFacts]:
        if self._access is None:
            raise RuntimeError("a bounded caller needs the access store")
        return self._access.wallet_facts(wallet_ids)

    def _authorize(self, caller: Caller, scope: str, wallet_ids: list[int]) -> Grant:
        return authorize(caller, scope, wallet_ids, self._facts)

    def _authorize_edge(self, caller: Caller, wallet_id: int) -> Grant:
        """Allocate and reclaim move money along one edge: the member and its parent are
        both inside the boundary (a tree grant on a member can't pull from above it)."""
        if caller.unbounded("allocate") is not None or not caller.grants_with("allocate"):
            return self._authorize(caller, "allocate", [wallet_id])
        member = self._facts([wallet_id]).get(wallet_id)
        parent = [member.path[-2]] if member is not None and len(member.path) > 1 else []
        return self._authorize(caller, "allocate", [wallet_id, *parent])

    def _authorize_transaction(self, caller: Caller, scope: str, transaction_id: int) -> Grant:
        """A transaction is inside a boundary when every customer wallet it moved is (a
        void) or, for a read, any of them is (both ends of a transfer see it)."""
        hidden = NotFound(
            f"transaction {transaction_id} does not exist",
            code="transaction_not_found",
            details={"transaction_id": transaction_id},
        )
        if not caller.grants_with(scope):
            raise Forbidden(f"this caller may not {scope}", details={"scope": scope})
        unbounded = caller.unbounded(scope)
        if unbounded is not None:
            return unbounded
        wallets = self._access.transaction_wallets(transaction_id) if self._access is not None else None
        if not wallets:
            raise hidden
        facts = self._facts(wallets)
        for grant in caller.grants_with(scope):
            inside = [within(grant, caller.principal, facts.get(w)) for w in wallets]
            if all(inside) or (scope == "read" and any(inside)):
                return grant
        raise hidden

    def _authorize_lot(self, caller: Caller, scope: str, lot_id: int) -> Grant:
        def hidden(_: int) -> NotFound:
            return NotFound(f"lot {lot_id} does not exist", code="lot_not_found", details={"lot_id": lot_id})

        if caller.unbounded(scope) is not None or not caller.grants_with(scope):
            return authorize(caller, scope, [], self._facts, hidden)
        wallet_id = self._access.lot_wallet(lot_id) if self._access is not None else None
        if wallet_id is None:
            raise hidden(lot_id)
        return authorize(caller, scope, [wallet_id], self._facts, hidden)

    def _require_unbounded(self, caller: Caller, scope: str, what: str) -> Grant:
        grant = caller.unbounded(scope)
        if grant is None:
            raise Forbidden(f"{what} needs {scope.replace('_', ' ')} over every wallet", details={"scope": scope})
        return grant

    # Reads ---------------------------------------------------------------------

    def get_transaction(self, caller: Caller, transaction_id: int) -> dict[str, Any]:
        self._authorize_transaction(caller, "read", transaction_id)
        return as_seen_by(caller, self.queries.get_transaction(transaction_id), self._facts)

    def find_transaction(self, caller: Caller, lookup: commands.TransactionLookup) -> dict[str, Any]:
        """A transaction of the caller's own tenant, by the key it was posted under or its
        business id, as get_transaction shows it. Another tenant's, one outside the
        caller's boundary and none at all answer alike, naming nothing (not even an id)."""
        hidden = NotFound("no transaction of this tenant matches", code="transaction_not_found")
        if not caller.grants_with("read"):
            raise Forbidden("this caller may not read", details={"scope": "read"})
        transaction_id = self.queries.find_transaction(caller.tenant, lookup)
        if transaction_id is None:
            raise hidden
        try:
            return self.get_transaction(caller, transaction_id)
        except NotFound:
            raise hidden from None

    def get_wallet(self, caller: Caller, wallet_id: int) -> dict[str, Any]:
        self._authorize(caller, "read", [wallet_id])
        return self.queries.get_wallet(wallet_id)

    def list_wallets(self, caller: Caller, owner_id: str) -> list[dict[str, Any]]:
        """An owner's wallets that the caller may read (none, rather than a refusal, for
        an owner outside its boundary: an owner id can't be probed either)."""
        if not caller.grants_with("read"):
            raise Forbidden("this caller may not read", details={"scope": "read"})
        wallets = self.queries.list_wallets(owner_id)
        if caller.unbounded("read") is not None:
            return wallets
        allowed = {f.id for f in visible(caller, self._facts([w["id"] for w in wallets]).values())}
        return [w for w in wallets if w["id"] in allowed]

    def history(self, caller: Caller, wallet_id: int, query: commands.HistoryQuery) -> dict[str, Any]:
        """A page of entries, and a cursor to the next one that only this query, on this
        wallet, for the caller's tenant, can use (common/cursors.py)."""
        self._authorize(caller, "read", [wallet_id])
        scope = history_scope(wallet_id, caller.tenant, query.action, query.from_, query.to)
        before = self._cursors().decode(query.cursor, scope) if query.cursor is not None else None
        items, more = self.queries.history(wallet_id, query, before)
        next_cursor = self._cursors().encode(items[-1]["entry_id"], scope) if more else None
        return {"wallet_id": wallet_id, "items": items, "next_cursor": next_cursor}

    def rollup(self, caller: Caller, wallet_id: int) -> dict[str, Any]:
        self._authorize(caller, "read", [wallet_id])
        return self.queries.rollup(wallet_id)

    def members(self, caller: Caller, wallet_id: int, after: int, limit: int) -> dict[str, Any]:
        self._authorize(caller, "read", [wallet_id])
        return self.queries.members(wallet_id, after, limit)

    def lots(self, caller: Caller, wallet_id: int, include_closed: bool = False) -> dict[str, Any]:
        self._authorize(caller, "read", [wallet_id])
        return self.queries.lots(wallet_id, include_closed)

    def get_lot(self, caller: Caller, lot_id: int) -> dict[str, Any]:
        self._authorize_lot(caller, "read", lot_id)
        return self.queries.get_lot(lot_id)

    def list_assets(self, caller: Caller) -> list[dict[str, Any]]:
        if not caller.grants_with("read"):
            raise Forbidden("this caller may not read", details={"scope": "read"})
        return self.queries.list_assets()

    # Administration ------------------------------------------------------------

    def create_wallet(self, caller: Caller, cmd: commands.CreateWallet) -> dict[str, Any]:
        """A member goes below a parent inside the caller's boundary; a root or personal
        wallet is opened by an unbounded admin, or by an end user for themselves. Only
        an unbounded admin gives credit."""
        grant: Grant | None
        if cmd.parent_id is not None:
            grant = self._authorize(caller, "wallet_admin", [cmd.parent_id])
        else:
            grant = caller.unbounded("wallet_admin") or next(
                (
                    g
                    for g in caller.grants_with("wallet_admin")
                    if g.boundary == "own" and caller.principal.owner_id == cmd.owner_id
                ),
                None,
            )
            if grant is None:
                raise Forbidden(
                    "opening a wallet outside a tree needs wallet admin over every wallet, or the owner's own grant",
                    details={"scope": "wallet_admin"},
                )
        if cmd.credit_limit and grant.boundary != "all":
            self._require_unbounded(caller, "wallet_admin", "giving credit")
        wallet_id, pending = self.admin.create_wallet(cmd, caller.actor(grant))
        wallet = self.queries.get_wallet(wallet_id)
        return wallet if pending is None else {**wallet, "pending_change_id": pending}

    def update_wallet(self, caller: Caller, wallet_id: int, cmd: commands.UpdateWallet) -> dict[str, Any]:
        """Inside the boundary; a credit limit only by an unbounded admin (above the
        dual-control threshold it waits for a second operator); a tree admin doesn't
        change its own root's status (an operator's freeze stays until an operator
        lifts it)."""
        grant = self._authorize(caller, "wallet_admin", [wallet_id])
        if cmd.credit_limit is not None and grant.boundary != "all":
            grant = self._require_unbounded(caller, "wallet_admin", "changing a credit limit")
        if cmd.status is not None and grant.boundary == "tree" and grant.root_wallet_id == wallet_id:
            raise Forbidden("a tree's own admin doesn't change its root's status", details={"wallet_id": wallet_id})
        pending = self.admin.update_wallet(wallet_id, cmd, caller.actor(grant))
        wallet = self.queries.get_wallet(wallet_id)
        return wallet if pending is None else {**wallet, "pending_change_id": pending}

    def extend_lot(self, caller: Caller, lot_id: int, cmd: commands.ExtendLot, key: str | None) -> Outcome:
        """Not a money movement: the database keeps one extension per key, so a retry
        (or a racing copy) answers with the same lot and posts nothing twice. Extending
        credit's life is the back office's and operators' (every wallet), never a
        tenant's own."""
        self._authorize_lot(caller, "wallet_admin", lot_id)
        grant = self._require_unbounded(caller, "wallet_admin", "extending a lot")
        replayed = self.admin.extend_lot(validate_key(key), lot_id, cmd, caller.tenant, caller.actor(grant))
        return Outcome(200, {"lot": self.queries.get_lot(lot_id)}, replayed=replayed)

    def create_asset(self, caller: Caller, cmd: commands.CreateAsset) -> dict[str, Any]:
        grant = self._require_unbounded(caller, "asset_admin", "creating an asset")
        return self.admin.create_asset(cmd, caller.actor(grant))

    # Jobs ----------------------------------------------------------------------

    def expire_lots(
        self,
        batch: int = 50,
        budget: int = 100_000,
        budget_s: float = float("inf"),
        pacer: Pacer | None = None,
        publish_after_commit: bool = True,
    ) -> dict[str, Any]:
        """The expiry job: every due lot becomes breakage, a batch per call (one database
        transaction, holding its wallets' locks no longer), until none is due, `budget`
        lots were handled or `budget_s` has passed, resting after each batch as `pacer`
        says. A lot that fails is logged and left for the next run, behind no other; so
        is one whose wallet a posting holds. Without `publish_after_commit` the expiries'
        events wait in the outbox for the paced sweep: a job's events are nobody's
        request, and publishing them as fast as the job posts would load everything
        downstream of the events topic at the job's pace, unpaced."""
        pacer = pacer or unpaced()
        started = time.monotonic()
        expired = failed = busy = amount = 0
        stopped_on_budget = False
        after: tuple[str, int] | None = None
        while expired + failed + busy < budget:
            if time.monotonic() - started >= budget_s:
                stopped_on_budget = True
                break
            size = pacer.size(batch)  # paced, sized to a short batch
            with pacer.batch():
                outcomes = self.ledger.expire_lots(size, after)
            pacer.counted(len(outcomes))
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
                    if publish_after_commit:
                        self._tell_committed(outcome["transaction_id"])
            if len(outcomes) < size:
                break
        else:
            stopped_on_budget = True
        return {
            "expired": expired,
            "failed": failed,
            "busy": busy,
            "amount": amount,
            "stopped_on_budget": stopped_on_budget,  # lots may be due still: the next run goes on
            "pacing": pacer.report(),
        }


def _business_id(action: str, cmd: commands.Command) -> str | None:
    """The id under which the tenant's business posts an action once, whatever the key
    (db/migrations/0009_business_ids.sql): a top-up's or add-on's payment reference, a
    usage's id. A bonus's external_ref is its campaign, shared by many."""
    field = {"topup": "external_ref", "addon": "external_ref", "usage": "usage_id"}.get(action)
    return None if field is None else getattr(cmd, field)


@dataclass(frozen=True)
class _Record:
    """A bulk usage record that parsed: its place in the batch, its command, its
    request hash (HTTP's, so the same usage over either path is one request) and, once
    authorized, who posts it."""

    index: int
    cmd: commands.Usage
    hash: str
    actor: dict[str, Any] | None = None


def _parse_usage(index: int, record: Any) -> _Record | RecordOutcome:
    from pydantic import ValidationError

    from common.ledger.commands import Usage

    usage_id = record.get("usage_id") if isinstance(record, dict) else None
    try:
        cmd = Usage.model_validate(record)
    except ValidationError as error:
        found = problems(error.errors(include_url=False, include_input=False, include_context=False))
        return RecordOutcome(
            index,
            usage_id if isinstance(usage_id, str) else None,
            "invalid",
            "validation_failed",
            "the record is invalid",
            found,
        )
    return _Record(index, cmd, fingerprint("usage", cmd.model_dump(mode="json")))


def _failed(record: _Record, error: Exception) -> RecordOutcome:
    """A record's outcome from an error of its own: final, or a retry when a dependency
    failed. An error outside the ledger's hierarchy is a bug: raised, never a result."""
    if not isinstance(error, LedgerError):
        raise error
    if isinstance(error, DependencyUnavailable):
        status = "retry"
    elif isinstance(error, (Forbidden, NotFound)):
        status = "forbidden"
    elif isinstance(error, InvalidRequest):
        status = "invalid"
    elif isinstance(error, Refused) and error.code == "idempotency_key_reused":
        # the key is the usage id's: another request posted the id under it meanwhile
        return already_posted(record.index, record.cmd.usage_id, (error.details or {}).get("transaction_id"))
    elif isinstance(error, (Refused, AlreadyPosted)):
        status = "refused"
    else:
        raise error
    return RecordOutcome(record.index, record.cmd.usage_id, status, error.code, error.message, error.details)


def _retry(records: list[_Record], error: LedgerError, outcomes: dict[int, RecordOutcome]) -> list[_Record]:
    for record in records:
        outcomes[record.index] = RecordOutcome(
            record.index, record.cmd.usage_id, "retry", error.code, error.message, error.details
        )
    return []
