-- Posting: ledger.commit_posting(), the one way money moves, and its batch form.
--
-- One round trip per posting: it claims the idempotency key, updates the cached
-- balances of the customer wallets in ascending id order (a deterministic lock order,
-- so opposite transfers cannot deadlock), and inserts all legs in one statement.
-- System accounts are validated but neither locked nor updated.
-- It returns only what the database knows (the id, timestamps, running balances); the
-- application renders the new transaction from the posting it sent, which is cheaper
-- than reading it back. A replay returns the stored original as transaction_json().
-- Refusals are raised through ledger.refuse() (10_refusals.sql).
--
-- Posting rules, read side by side. Each action's Python half in
-- common/ledger/postings.py builds the legs; ledger.posting_rule_breach()
-- (65_posting_rules.sql) refuses any legs that are not exactly what the action moves
-- (invalid_posting, reason legs_do_not_follow_rule) before anything is written; the
-- SQL half below is what the database decides under the wallet locks:
--
--   action    Python half   legs (65_posting_rules.sql)   SQL half (commit_posting, by `p_action`)
--   topup     top_up()      funding -> wallet; at a       a lot when `p_lot_expires_at` is set
--                           price, discount gives the     (60_lots.sql)
--                           rest
--   addon     add_on()      funding -> wallet             the same
--   bonus     bonus()       promotion -> wallet           the same
--   opening_  (common.      migration -> wallet           the same (docs/migrations.md)
--   balance   migrate)
--   usage     usage()       wallet -> revenue             a shared pool's member: the pool pays
--                                                         (legs rewritten after the check); spend
--                                                         limits on the path charged
--                                                         (50_spend_limits.sql)
--   transfer  transfer()    wallet -> counterparty        both wallets personal or in one tree
--                                                         (transfer_outside_tree); lot pieces carried
--   migration_ (common.     wallet -> counterparty        as a transfer, across trees and models;
--   transfer  migrate move)                               keys `migration:` only; lot pieces carried
--   allocate  allocate()    parent -> wallet              the edge is checked (not_a_child); lot
--   reclaim   reclaim()     wallet -> parent              pieces carried down or up the tree
--   void      reversal()    the original's entries        voids and expiries refused (not_voidable);
--                           negated; its asset, amount,   the original's own lots taken back first,
--                           wallet and counterparty       the credit it paid returned to the lots it
--                                                         took from (credit_expired once they
--                                                         expired); its spend charges refunded
--   expiry    (none: the    wallet -> breakage            keys `lot-expiry:` reserved; the named lot,
--             database's                                  the wallet's own and due, emptied whole
--             job, 85_jobs)                               into breakage
--   dormant_  (none: the    wallet -> dormant             keys `dormant-sweep:` reserved; only the
--   sweep     runner, 86_)                                period the runner opened; voided only by a
--                                                         reactivation (`dormant-reactivation:`); the
--                                                         lots named in metadata.lots taken first
--   dormant_  (the same)    wallet -> breakage            the same as dormant_sweep
--   breakage
-- Every action: a system account never acts (system_account); a customer wallet must be
-- active (wallet_frozen, wallet_closed; an expiry alone also empties a due lot of a
-- frozen or closed wallet; a dormant one is refused wallet_dormant, except a top-up or
-- add-on its policy lets reactivate it, 86_dormancy.sql) and stays within its limit (insufficient_funds); the posting
-- is dated by the database (p_effective_at must be NULL).

-- A customer's own doing, the inactivity a dormancy period counts from
-- (86_dormancy.sql): money it paid in (a top-up, an add-on) or spent or sent (a
-- usage, a transfer). A bonus, an allocation, an expiry or a void happen to a wallet.
CREATE FUNCTION ledger.customer_initiated(p_action text, p_leg_amount bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT (p_action IN ('topup', 'addon') AND p_leg_amount > 0) OR (p_action IN ('usage', 'transfer') AND p_leg_amount < 0)
$$;

CREATE FUNCTION ledger.commit_posting(
  p_idempotency_key text,
  p_request_hash text,
  p_action text,
  p_asset text,
  p_amount bigint,
  p_wallet_id bigint,
  p_counterparty_wallet_id bigint,
  p_leg_wallets bigint[],
  p_leg_amounts bigint[],
  p_external_ref text DEFAULT NULL,
  p_usage_id text DEFAULT NULL,
  p_product text DEFAULT NULL,
  p_description text DEFAULT NULL,
  p_voids_transaction_id bigint DEFAULT NULL,
  p_metadata jsonb DEFAULT '{}'::jsonb,
  p_effective_at timestamptz DEFAULT NULL,
  p_lot_expires_at timestamptz DEFAULT NULL,  -- a top-up, add-on or bonus that creates a lot
  p_expiring_lot bigint DEFAULT NULL,         -- the lot an expiry posting empties
  p_tenant text DEFAULT '',                   -- the caller's tenant: the key's scope
  p_actor jsonb DEFAULT NULL,                 -- who posted: principal, issuer, role, tenant, request id
  OUT replayed boolean,
  OUT transaction_id bigint,
  OUT created_at text,
  OUT effective_at text,
  OUT balances bigint[],
  OUT original jsonb,
  OUT leg_wallets bigint[]  -- set when the ledger chose another payer (a shared pool)
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_tx bigint;
  v_existing record;
  v_same_id bigint;            -- the posting that holds this business id already
  v_same_key text;
  v_same_hash text;
  v_wallet record;
  v_spender record;
  v_legs bigint[] := p_leg_wallets;
  v_balances bigint[];
  v_balance bigint;
  v_model text;
  v_root bigint;
  v_models text[] := ARRAY[]::text[];
  v_roots bigint[] := ARRAY[]::bigint[];
  v_debit_lots boolean := false;
  v_first bigint[];
  v_leg int;
  v_order int[];               -- the legs' positions in locking order
  v_slot int;
  v_breach text;
  v_now timestamptz := now();
  -- A posting takes effect when it commits: the caller never dates it (see below).
  v_effective timestamptz := now();
  v_at timestamptz := now();  -- lots are judged at the posting's time
  v_piece record;
  v_credited bigint;
  v_restored bigint := 0;
  v_budget bigint;
  v_general_first bigint := 0;   -- a void: what its original brought without expiry
  v_restore_cap bigint;          -- a void: how much goes back into the original's lots
  v_customer_debit boolean := false;
  v_original_action text;
BEGIN
  IF cardinality(p_leg_wallets) < 2 OR cardinality(p_leg_wallets) <> cardinality(p_leg_amounts) THEN
    PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'legs'));
  END IF;
  -- The legs are the caller's: held to the action's rule (65_posting_rules.sql) before
  -- anything is written. A usage is checked as sent, before the pool is swapped in.
  -- (An assignment, not PERFORM ... FROM: PL/pgSQL evaluates it without starting a
  -- query's executor, on every posting.)
  v_breach := posting_rule_breach(p_action, p_asset, p_amount, p_wallet_id, p_counterparty_wallet_id, p_metadata,
                                  p_voids_transaction_id, p_leg_wallets, p_leg_amounts);
  IF v_breach IS NOT NULL THEN
    PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'legs_do_not_follow_rule', 'rule', v_breach));
  END IF;
  -- The posting's time picks the spend-limit period a usage charges and the instant its
  -- lots are judged at: a back-dated usage would charge a period already over, and the
  -- current limit would never bind. Nothing posts with another time (the expiry job
  -- neither), so the parameter is refused; it stays in the signature the grants and
  -- common/adapters/ledger_store.py pin.
  IF p_effective_at IS NOT NULL THEN
    PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'the ledger dates a posting itself'));
  END IF;
  -- The expiry job's keys are its own: a client posting under one could block a lot's
  -- expiry for good.
  IF (p_action = 'expiry') <> (p_idempotency_key LIKE 'lot-expiry:%') THEN
    PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'idempotency keys starting lot-expiry: are reserved'));
  END IF;
  -- A migration's opening balance brings money in from migration equity, and its move
  -- crosses trees, which no caller's transfer may: only the migration command posts
  -- them, under its `migration:` keys (the edges refuse them to callers).
  IF p_action IN ('opening_balance', 'migration_transfer') AND p_idempotency_key NOT LIKE 'migration:%' THEN
    PERFORM refuse('invalid_posting', jsonb_build_object(
      'reason', 'an opening_balance or migration_transfer posts only under a migration: idempotency key'));
  END IF;
  -- So are the dormancy runner's: a client sweeping a wallet, or voiding a sweep and so
  -- paying the swept balance back without reactivating the wallet, would move money
  -- no policy decided.
  IF (p_action IN ('dormant_sweep', 'dormant_breakage')) <> (p_idempotency_key LIKE 'dormant-sweep:%')
     OR (p_idempotency_key LIKE 'dormant-reactivation:%') AND p_action <> 'void' THEN
    PERFORM refuse('invalid_posting', jsonb_build_object(
      'reason', 'idempotency keys starting dormant-sweep: or dormant-reactivation: are reserved'));
  END IF;

  -- A business id posts once per tenant, whatever the key (the unique indexes of
  -- migration 0009): a second request for it is the first's outcome when it is the same
  -- request, else refused naming the first. A key that posted already keeps its own
  -- answer (below), whatever its business id. Two at once: the index makes the later insert wait for the first and fail
  -- (23505); the caller posts it again (common/adapters/postgres.py) and lands here.
  IF p_action = 'usage' AND p_usage_id IS NOT NULL THEN
    SELECT id, idempotency_key, request_hash INTO v_same_id, v_same_key, v_same_hash FROM transactions
     WHERE tenant = coalesce(p_tenant, '') AND action = 'usage' AND usage_id = p_usage_id;
  ELSIF p_action IN ('topup', 'addon') AND p_external_ref IS NOT NULL THEN
    SELECT id, idempotency_key, request_hash INTO v_same_id, v_same_key, v_same_hash FROM transactions
     WHERE tenant = coalesce(p_tenant, '') AND action IN ('topup', 'addon') AND action = p_action
       AND external_ref = p_external_ref;
  END IF;
  IF v_same_id IS NOT NULL AND v_same_key <> p_idempotency_key
     AND NOT EXISTS (SELECT 1 FROM transactions
                      WHERE tenant = coalesce(p_tenant, '') AND idempotency_key = p_idempotency_key) THEN
    IF v_same_hash <> p_request_hash AND p_action = 'usage' THEN
      PERFORM refuse('usage_id_already_posted', jsonb_build_object('transaction_id', v_same_id));
    ELSIF v_same_hash <> p_request_hash THEN
      PERFORM refuse('external_ref_already_posted', jsonb_build_object('transaction_id', v_same_id));
    END IF;
    replayed := true;
    transaction_id := v_same_id;
    original := transaction_json(v_same_id);
    RETURN;
  END IF;

  INSERT INTO transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id,
                            counterparty_wallet_id, external_ref, usage_id, product, description,
                            voids_transaction_id, metadata, effective_at, tenant, actor)
  VALUES (p_idempotency_key, p_request_hash, p_action, p_asset, p_amount, p_wallet_id,
          p_counterparty_wallet_id, p_external_ref, p_usage_id, p_product, p_description,
          p_voids_transaction_id, coalesce(p_metadata, '{}'::jsonb), v_effective, coalesce(p_tenant, ''), p_actor)
  ON CONFLICT ON CONSTRAINT transactions_tenant_key_unique DO NOTHING
  RETURNING id INTO v_tx;

  IF v_tx IS NULL THEN
    -- The key already posted (for example a retry after a crash between this commit
    -- and the idempotency record): answer with the original transaction, post nothing.
    SELECT id, request_hash INTO v_existing FROM transactions
     WHERE tenant = coalesce(p_tenant, '') AND idempotency_key = p_idempotency_key;
    IF v_existing.request_hash <> p_request_hash THEN
      PERFORM refuse('idempotency_key_reused', jsonb_build_object('transaction_id', v_existing.id));
    END IF;
    replayed := true;
    transaction_id := v_existing.id;
    original := transaction_json(v_existing.id);
    RETURN;
  END IF;

  IF p_action = 'usage' THEN
    -- A member of a shared-pool tree spends from the pool: the ledger, not the caller,
    -- decides who pays, so a caller can't debit a member whose tree shares its pool.
    -- Read before any lock is taken: whether a limit applies is known up front, so a
    -- usage without one holds its wallet no longer than before.
    SELECT w.status, w.parent_id, w.root_id, w.path, r.spend_mode,
           EXISTS (SELECT 1 FROM spend_limits l WHERE l.wallet_id = ANY (w.path)) AS limited
      INTO v_spender
      FROM wallets w JOIN wallets r ON r.id = w.root_id WHERE w.id = p_wallet_id;
    IF FOUND AND v_spender.parent_id IS NOT NULL AND v_spender.spend_mode = 'shared_pool' THEN
      IF v_spender.status <> 'active' THEN
        PERFORM refuse('wallet_' || v_spender.status, jsonb_build_object('wallet_id', p_wallet_id));
      END IF;
      v_legs := array_replace(v_legs, p_wallet_id, v_spender.root_id);
      leg_wallets := v_legs;
    END IF;
  ELSIF p_action IN ('allocate', 'reclaim') THEN
    PERFORM 1 FROM wallets WHERE id = p_wallet_id AND parent_id = p_counterparty_wallet_id;
    IF NOT FOUND THEN
      PERFORM refuse('not_a_child', jsonb_build_object(
        'wallet_id', p_wallet_id, 'parent_id', p_counterparty_wallet_id));
    END IF;
  END IF;
  IF p_action IN ('dormant_sweep', 'dormant_breakage') THEN
    -- only the sweep of a period the runner opened and has not made dormant yet (the
    -- key names it, then the group): anyone else's is refused, whatever its key
    PERFORM 1 FROM dormancy_periods d
     WHERE d.wallet_id = p_wallet_id AND d.dormant_at IS NULL
       AND starts_with(p_idempotency_key, dormancy_sweep_key(d.wallet_id, d.since));
    IF NOT FOUND THEN
      PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'only the dormancy runner sweeps a wallet'));
    END IF;
  ELSIF p_action IN ('topup', 'addon') THEN
    -- a dormant wallet whose policy says so comes back on a top-up (its sweep voided
    -- first), and the top-up then posts like on any active wallet
    PERFORM 1 FROM wallets w JOIN dormancy_policies d ON d.asset_code = w.asset_code AND d.model = w.model
     WHERE w.id = p_wallet_id AND w.status = 'dormant' AND d.reactivation = 'automatic';
    IF FOUND THEN
      PERFORM dormancy_reactivate(p_wallet_id, p_actor);
    END IF;
  END IF;
  IF p_action = 'void' THEN
    SELECT action INTO v_original_action FROM transactions WHERE id = p_voids_transaction_id;
    IF v_original_action IN ('void', 'expiry')
       OR (v_original_action IN ('dormant_sweep', 'dormant_breakage'))
          <> (p_idempotency_key LIKE 'dormant-reactivation:%') THEN
      PERFORM refuse('not_voidable', jsonb_build_object('transaction_id', p_voids_transaction_id));
    END IF;
    -- the debit takes back first the lots the original created, then as much
    -- non-expiring credit as the original brought without a lot
    v_first := ARRAY(SELECT lot_id FROM lot_movements m WHERE m.transaction_id = p_voids_transaction_id
                        AND m.amount > 0);
    v_general_first := p_amount - coalesce((SELECT sum(m.amount) FROM lot_movements m
                                             WHERE m.transaction_id = p_voids_transaction_id AND m.amount > 0), 0);
  ELSIF p_action IN ('dormant_sweep', 'dormant_breakage') THEN
    -- a sweep of one traced group takes that group's lots (86_dormancy.sql), so each
    -- lot's movements name the posting that booked its product
    v_first := ARRAY(SELECT jsonb_array_elements_text(coalesce(p_metadata -> 'lots', '[]'::jsonb))::bigint);
  ELSIF p_action = 'expiry' THEN
    IF p_expiring_lot IS NULL THEN
      PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'an expiry names its lot'));
    END IF;
    v_first := ARRAY[p_expiring_lot];
  END IF;

  v_balances := array_fill(NULL::bigint, ARRAY[cardinality(v_legs)]);
  -- Locking order: ascending wallet id, then position. The rule allows at most three
  -- legs, so an insertion sort here costs less than a query that sorts them.
  v_order := ARRAY[]::int[];
  FOR v_leg IN 1 .. cardinality(v_legs) LOOP
    v_slot := cardinality(v_order);
    v_order := v_order || v_leg;
    WHILE v_slot >= 1 AND v_legs[v_order[v_slot]] > v_legs[v_leg] LOOP
      v_order[v_slot + 1] := v_order[v_slot];
      v_slot := v_slot - 1;
    END LOOP;
    v_order[v_slot + 1] := v_leg;
  END LOOP;
  FOREACH v_leg IN ARRAY v_order
  LOOP
    UPDATE wallets
       SET balance = balance + p_leg_amounts[v_leg],
           entry_count = entry_count + 1,
           updated_at = now(),
           last_activity_at = CASE WHEN customer_initiated(p_action, p_leg_amounts[v_leg]) THEN now()
                                   ELSE last_activity_at END
     WHERE id = v_legs[v_leg]
       AND kind = 'customer' AND (status = 'active' OR p_action = 'expiry') AND asset_code = p_asset
       AND (p_leg_amounts[v_leg] > 0 OR (lot_balance = 0 AND balance + p_leg_amounts[v_leg] >= -credit_limit))
    RETURNING balance, model, root_id INTO v_balance, v_model, v_root;
    IF FOUND THEN
      v_balances[v_leg] := v_balance;
      v_models := v_models || v_model;
      v_roots := v_roots || v_root;
      v_customer_debit := v_customer_debit OR p_leg_amounts[v_leg] < 0;
      CONTINUE;
    END IF;
    -- Not updated: find out why. A system account is the normal case.
    SELECT id, kind, status, asset_code, balance, credit_limit, lot_balance, model, root_id INTO v_wallet
      FROM wallets WHERE id = v_legs[v_leg];
    IF NOT FOUND THEN
      PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', v_legs[v_leg]));
    ELSIF v_wallet.asset_code <> p_asset AND NOT EXISTS (SELECT 1 FROM assets WHERE code = p_asset) THEN
      -- a transfer, allocation or reclaim names no system account, so an asset that
      -- does not exist is first seen here
      PERFORM refuse('unknown_asset', jsonb_build_object('asset', p_asset));
    ELSIF v_wallet.asset_code <> p_asset THEN
      PERFORM refuse('asset_mismatch', jsonb_build_object(
        'wallet_id', v_wallet.id, 'wallet_asset', v_wallet.asset_code, 'asset', p_asset));
    ELSIF v_wallet.kind = 'system' THEN
      -- a system account takes only the side its action gives it, never the place of
      -- the wallet acting or its counterparty (a transfer out of funding would mint money)
      IF v_wallet.id = p_wallet_id OR v_wallet.id = p_counterparty_wallet_id THEN
        PERFORM refuse('system_account', jsonb_build_object('wallet_id', v_wallet.id));
      END IF;
      CONTINUE;
    ELSIF v_wallet.status <> 'active' AND p_action <> 'expiry' THEN
      PERFORM refuse('wallet_' || v_wallet.status, jsonb_build_object('wallet_id', v_wallet.id));
    ELSIF v_wallet.lot_balance > 0 THEN
      -- a debit of a wallet that holds lots
      v_balances[v_leg] := debit_with_lots(v_wallet.id, -p_leg_amounts[v_leg], v_tx, v_at, v_first,
                                           v_general_first, p_action = 'expiry');
      IF customer_initiated(p_action, p_leg_amounts[v_leg]) THEN
        UPDATE wallets SET last_activity_at = now() WHERE id = v_wallet.id;
      END IF;
      v_customer_debit := true;
      v_models := v_models || v_wallet.model;
      v_roots := v_roots || v_wallet.root_id;
      v_debit_lots := true;
    ELSE
      PERFORM refuse('insufficient_funds', jsonb_build_object(
        'wallet_id', v_wallet.id, 'balance', v_wallet.balance,
        'credit_limit', v_wallet.credit_limit, 'requested', -p_leg_amounts[v_leg]));
    END IF;
  END LOOP;

  IF p_action = 'transfer' AND NOT ('personal' = ALL (v_models) OR v_roots[1] = ALL (v_roots)) THEN
    -- a tree's money leaves it only through its own actions (usage, reclaim)
    PERFORM refuse('transfer_outside_tree', jsonb_build_object(
      'wallet_id', p_wallet_id, 'counterparty_wallet_id', p_counterparty_wallet_id));
  END IF;

  IF p_action = 'void' THEN
    -- Checked now that every wallet is locked, so an expiry committed meanwhile is seen:
    -- credit the original brought that has since expired went to breakage, and taking
    -- it back from the customer's other credit would charge for it twice.
    PERFORM 1 FROM lot_movements m JOIN transactions x ON x.id = m.transaction_id
     WHERE m.lot_id = ANY (v_first) AND x.action = 'expiry';
    IF FOUND THEN
      PERFORM refuse('credit_expired', jsonb_build_object('transaction_id', p_voids_transaction_id));
    END IF;
  ELSIF p_action = 'expiry' THEN
    -- An expiry does only what the expiry job (85_jobs.sql) would do anyway: it empties a
    -- lot of the acting wallet that is due, all of it, into breakage. Without this, the
    -- money functions' role could drain any lot of any wallet, unexpired, frozen or
    -- closed (an expiry skips the status check), into breakage at a moment of its
    -- choosing. Checked under the wallet's lock, with the lot's row locked by the debit
    -- above, so neither a usage nor an extension can change the lot in between (an
    -- extension refuses a due lot anyway).
    PERFORM 1 FROM lots l
     WHERE l.id = p_expiring_lot AND l.wallet_id = p_wallet_id AND l.expires_at <= v_now AND l.remaining = 0
       AND EXISTS (SELECT 1 FROM lot_movements m WHERE m.transaction_id = v_tx AND m.lot_id = l.id
                                                   AND m.amount = -p_amount);
    IF NOT FOUND THEN
      PERFORM refuse('invalid_posting', jsonb_build_object(
        'reason', 'an expiry takes all that a due lot of its wallet holds', 'lot_id', p_expiring_lot));
    END IF;
  END IF;

  -- Lots on the credited side.
  IF p_action = 'void' THEN
    -- Give back to the lots the original took from, but only as much as the debit took
    -- back from the original's own lots (all of it when a system account pays, as in
    -- a void of a usage): credit the payee paid from elsewhere keeps its own expiry
    -- (carried below) or none.
    v_restore_cap := CASE WHEN v_customer_debit
                          THEN coalesce((SELECT -sum(m.amount) FROM lot_movements m
                                          WHERE m.transaction_id = v_tx AND m.amount < 0
                                            AND m.lot_id = ANY (v_first)), 0)
                          ELSE p_amount END;
    FOR v_piece IN
      SELECT m.lot_id, -m.amount AS amount, l.wallet_id FROM lot_movements m JOIN lots l ON l.id = m.lot_id
       WHERE m.transaction_id = p_voids_transaction_id AND m.amount < 0 ORDER BY m.lot_id
    LOOP
      EXIT WHEN v_restored >= v_restore_cap;
      v_piece.amount := least(v_piece.amount, v_restore_cap - v_restored);
      PERFORM move_lot(v_piece.lot_id, v_tx, v_piece.amount);
      UPDATE wallets SET lot_balance = lot_balance + v_piece.amount WHERE id = v_piece.wallet_id;
      v_restored := v_restored + v_piece.amount;
    END LOOP;
    PERFORM refund_spend(v_tx, p_voids_transaction_id);
  END IF;
  IF p_lot_expires_at IS NOT NULL THEN
    IF p_action NOT IN ('topup', 'addon', 'bonus', 'opening_balance') THEN
      PERFORM refuse('invalid_posting', jsonb_build_object(
        'reason', 'only a top-up, add-on, bonus or opening balance creates a lot'));
    END IF;
    IF p_lot_expires_at <= v_at THEN
      PERFORM refuse('expiry_in_past', jsonb_build_object('expires_at', iso_utc(p_lot_expires_at)));
    END IF;
    PERFORM new_lot(p_wallet_id, v_tx, p_amount, p_lot_expires_at);
  ELSIF v_debit_lots AND p_action IN ('transfer', 'allocate', 'reclaim', 'migration_transfer', 'void') THEN
    -- Money keeps its expiry: the pieces taken from the payer's lots become lots of the
    -- customer credited, up to what it receives beyond the pieces restored above (a
    -- void's own lots are not carried: what they held is what was restored).
    SELECT v_legs[i] INTO v_credited FROM generate_subscripts(v_legs, 1) AS i
     WHERE p_leg_amounts[i] > 0 AND EXISTS (SELECT 1 FROM wallets w WHERE w.id = v_legs[i] AND w.kind = 'customer');
    v_budget := p_amount - v_restored;
    IF v_credited IS NOT NULL THEN
      FOR v_piece IN
        SELECT l.id, l.expires_at, -m.amount AS amount FROM lot_movements m JOIN lots l ON l.id = m.lot_id
         WHERE m.transaction_id = v_tx AND m.amount < 0 AND l.id <> ALL (coalesce(v_first, ARRAY[]::bigint[]))
         ORDER BY m.id
      LOOP
        EXIT WHEN v_budget <= 0;
        PERFORM new_lot(v_credited, v_tx, least(v_piece.amount, v_budget), v_piece.expires_at, v_piece.id);
        v_budget := v_budget - least(v_piece.amount, v_budget);
      END LOOP;
    END IF;
  END IF;

  IF p_action = 'usage' THEN
    IF v_spender.limited THEN
      PERFORM charge_spend(v_tx, v_spender.path, p_amount, v_effective);
    END IF;
  END IF;

  INSERT INTO entries (transaction_id, wallet_id, asset_code, amount, balance_after)
  SELECT v_tx, l.wallet_id, p_asset, l.amount, l.balance_after
    FROM unnest(v_legs, p_leg_amounts, v_balances) AS l(wallet_id, amount, balance_after);

  replayed := false;
  transaction_id := v_tx;
  created_at := iso_utc(v_now);
  effective_at := CASE WHEN v_effective = v_now THEN created_at ELSE iso_utc(v_effective) END;
  balances := v_balances;
END $$;

-- Group commit: several postings in one round trip and one database transaction.
--
-- Under load, a function instance has several requests posting at once. Sending them
-- together saves a round trip, a statement and a commit per posting, which is most of
-- what a posting costs besides its own rows. Each posting keeps its own outcome: it
-- runs in its own subtransaction, so a refusal (insufficient funds, a reused key)
-- rolls back that posting alone and comes back as its error fields.
--
-- Deadlock freedom: every customer wallet the batch touches is locked first, in id
-- order, so two batches never wait on each other in a cycle through wallet rows; the
-- wallets it locks up front include the pool of every shared-pool member that uses, so
-- no posting takes a new wallet lock after the batch's. The postings then run in the
-- order given and re-lock nothing new. Those locks wait at most a second, so one wallet
-- held elsewhere cannot stall an instance's postings for a whole statement timeout.
CREATE FUNCTION ledger.commit_postings(p_batch jsonb)
RETURNS TABLE (
  item integer,
  replayed boolean,
  transaction_id bigint,
  created_at text,
  effective_at text,
  balances text,
  original jsonb,
  leg_wallets text,
  error_sqlstate text,
  error_message text,
  error_detail text,
  error_constraint text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_posting record;
  v_result record;
  v_wallets bigint[];
  v_counter record;
  v_lock_timeout text;
BEGIN
  -- The ids go through an array so the lock is an index lookup per wallet; a join
  -- against the JSON would be planned for 100 rows per element and scan the table.
  v_wallets := ARRAY(SELECT DISTINCT leg::bigint
                       FROM jsonb_array_elements(p_batch) AS p(posting),
                            jsonb_array_elements_text(p.posting -> 'leg_wallets') AS l(leg));
  v_wallets := v_wallets || ARRAY(SELECT w.root_id FROM wallets w JOIN wallets r ON r.id = w.root_id
                                   WHERE w.id = ANY (v_wallets) AND w.parent_id IS NOT NULL
                                     AND r.spend_mode = 'shared_pool');
  -- NO KEY UPDATE is the lock commit_posting()'s balance update takes (FOR UPDATE would
  -- also block other postings' foreign-key checks). A batch waits at most
  -- a second for them: one wallet held elsewhere must not stall every posting of the
  -- instance behind this batch; on lock_not_available the caller posts each member
  -- alone.
  v_lock_timeout := current_setting('lock_timeout');
  PERFORM set_config('lock_timeout', '1000', true);
  PERFORM 1 FROM wallets WHERE id = ANY (v_wallets) AND kind = 'customer' ORDER BY id FOR NO KEY UPDATE;
  -- Then the spend counters every usage of the batch will charge and every void will
  -- refund, in key order: two batches charging the same two limits in opposite posting
  -- order must not deadlock.
  FOR v_counter IN
    SELECT l.wallet_id, l.period, period_start(l.period, now()) AS period_start
      FROM jsonb_array_elements(p_batch) AS p(posting)
      JOIN wallets w ON w.id = (p.posting ->> 'wallet_id')::bigint
      JOIN spend_limits l ON l.wallet_id = ANY (w.path)
     WHERE p.posting ->> 'action' = 'usage'
    UNION
    SELECT g.wallet_id, g.period, g.period_start
      FROM jsonb_array_elements(p_batch) AS p(posting)
      JOIN spend_charges g ON g.transaction_id = (p.posting ->> 'voids_transaction_id')::bigint
     WHERE p.posting ->> 'action' = 'void'
     ORDER BY 1, 2, 3
  LOOP
    INSERT INTO spend_counters (wallet_id, period, period_start, spent)
    VALUES (v_counter.wallet_id, v_counter.period, v_counter.period_start, 0)
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM spend_counters c
     WHERE (c.wallet_id, c.period, c.period_start) = (v_counter.wallet_id, v_counter.period, v_counter.period_start)
       FOR UPDATE;
  END LOOP;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);

  FOR v_posting IN
    SELECT *
      FROM jsonb_to_recordset(p_batch) AS p(
             item integer, key text, request_hash text, action text, asset text, amount bigint,
             wallet_id bigint, counterparty_wallet_id bigint, leg_wallets bigint[], leg_amounts bigint[],
             external_ref text, usage_id text, product text, description text, voids_transaction_id bigint,
             metadata jsonb, lot_expires_at timestamptz, tenant text, actor jsonb)
  LOOP
    item := v_posting.item;
    BEGIN
      SELECT * INTO STRICT v_result
        FROM commit_posting(v_posting.key, v_posting.request_hash, v_posting.action, v_posting.asset,
                            v_posting.amount, v_posting.wallet_id, v_posting.counterparty_wallet_id,
                            v_posting.leg_wallets, v_posting.leg_amounts, v_posting.external_ref,
                            v_posting.usage_id, v_posting.product, v_posting.description,
                            v_posting.voids_transaction_id, coalesce(v_posting.metadata, '{}'::jsonb),
                            NULL, v_posting.lot_expires_at, NULL, coalesce(v_posting.tenant, ''),
                            v_posting.actor);
      replayed := v_result.replayed;
      transaction_id := v_result.transaction_id;
      created_at := v_result.created_at;
      effective_at := v_result.effective_at;
      balances := array_to_string(v_result.balances, ',', '');
      original := v_result.original;
      leg_wallets := array_to_string(v_result.leg_wallets, ',');
      error_sqlstate := NULL;
      error_message := NULL;
      error_detail := NULL;
      error_constraint := NULL;
    EXCEPTION WHEN OTHERS THEN
      replayed := NULL;
      transaction_id := NULL;
      created_at := NULL;
      effective_at := NULL;
      balances := NULL;
      original := NULL;
      leg_wallets := NULL;
      GET STACKED DIAGNOSTICS error_sqlstate = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                              error_detail = PG_EXCEPTION_DETAIL, error_constraint = CONSTRAINT_NAME;
    END;
    RETURN NEXT;
  END LOOP;
END $$;

-- An asset comes with its system accounts; creating both in one call keeps every
-- asset postable from the moment it exists.
CREATE FUNCTION ledger.create_asset(p_code text, p_scale smallint, p_description text DEFAULT '',
                                    p_actor jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
BEGIN
  INSERT INTO assets (code, scale, description) VALUES (p_code, p_scale, coalesce(p_description, ''));
  INSERT INTO wallets (asset_code, kind, system_role, owner_id, model)
  SELECT p_code, 'system', role, 'system', 'system'
    FROM unnest(ARRAY['funding', 'revenue', 'promotion', 'breakage', 'discount', 'migration', 'dormant']) AS role;
  PERFORM audit(p_actor, 'asset.create', 'asset:' || p_code, NULL,
                jsonb_build_object('code', p_code, 'scale', p_scale, 'description', coalesce(p_description, '')),
                NULL);
END $$;
