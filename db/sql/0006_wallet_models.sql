-- Wallet models: enterprise and reseller trees, spend limits, credit lots with expiry.
--
-- Trees. A wallet may have a parent of the same asset and model (enterprise or
-- reseller); the root is the enterprise's pool or the reseller's wholesale wallet, and
-- every wallet records its root and its path from the root, which never change. A
-- personal wallet is a tree of one. Money moves down a tree by `allocate` and up by
-- `reclaim`, each a ledger transaction between a wallet and its parent. Roll-up
-- balances are summed on read: no parent row is written when a member acts.
--
-- Usage modes, per root: `allocated` (a member spends only its own wallet) or
-- `shared_pool` (a member's usage debits the root's pool; the member is still the
-- transaction's wallet, so it is attributed and counted against its limits).
--
-- Spend limits: per wallet and period (UTC day, ISO week or calendar month), on a
-- member and on any ancestor, which caps its whole subtree. A usage charges the counter
-- of every limit on its path, under the counter's row lock, after the wallet locks
-- (one lock order: wallets, then counters). Each charge is recorded, so a void gives
-- back exactly what its usage took and every counter equals the sum of its charges.
--
-- Lots. A top-up, add-on or bonus that carries an expiry creates a lot. A wallet's
-- `lot_balance` is the sum of its lots' remaining amounts; the rest of its balance
-- never expires. A debit takes from unexpired lots, earliest expiry first, and then
-- from the non-expiring rest, which may not go below -credit_limit (a CHECK):
-- expired lots can't be spent even before the expiry job turns them into breakage.
-- Money keeps its expiry when it moves: a transfer, allocation or reclaim carries the
-- lot pieces it took into new lots of the receiver with the same expiry. A void takes
-- the lots its original created first and gives back the pieces its original took.
-- Every change of a lot's remaining amount is a row of lot_movements (append-only), and
-- a wallet's lots change only under its wallet row lock.

-- New actions ---------------------------------------------------------------------

ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_action_check;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_action_check CHECK (action IN (
  'topup', 'addon', 'bonus', 'usage', 'transfer', 'void', 'allocate', 'reclaim', 'expiry'));

-- System accounts: breakage (expired credit) and discount (a reseller's wholesale
-- discount) for every asset, existing and new.
INSERT INTO ledger.wallets (asset_code, kind, system_role, owner_id, model)
SELECT a.code, 'system', r.role, 'system', 'system'
  FROM ledger.assets a CROSS JOIN unnest(ARRAY['breakage', 'discount']) AS r(role)
 WHERE NOT EXISTS (SELECT 1 FROM ledger.wallets w
                    WHERE w.kind = 'system' AND w.asset_code = a.code AND w.system_role = r.role);

CREATE OR REPLACE FUNCTION ledger.create_asset(p_code text, p_scale smallint, p_description text DEFAULT '')
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
BEGIN
  INSERT INTO assets (code, scale, description) VALUES (p_code, p_scale, coalesce(p_description, ''));
  INSERT INTO wallets (asset_code, kind, system_role, owner_id, model)
  SELECT p_code, 'system', role, 'system', 'system'
    FROM unnest(ARRAY['funding', 'revenue', 'promotion', 'breakage', 'discount']) AS role;
END $$;

-- Trees -------------------------------------------------------------------------

ALTER TABLE ledger.wallets
  ADD COLUMN parent_id   bigint,
  ADD COLUMN root_id     bigint,
  ADD COLUMN path        bigint[],
  ADD COLUMN spend_mode  text CHECK (spend_mode IN ('allocated', 'shared_pool')),
  ADD COLUMN lot_balance bigint NOT NULL DEFAULT 0 CHECK (lot_balance >= 0);

ALTER TABLE ledger.wallets DISABLE TRIGGER USER;
UPDATE ledger.wallets SET root_id = id, path = ARRAY[id],
       spend_mode = CASE WHEN model IN ('enterprise', 'reseller') THEN 'allocated' END;
ALTER TABLE ledger.wallets ENABLE TRIGGER USER;
ALTER TABLE ledger.wallets ALTER COLUMN root_id SET NOT NULL, ALTER COLUMN path SET NOT NULL;

ALTER TABLE ledger.wallets
  ADD CONSTRAINT wallets_id_asset_model UNIQUE (id, asset_code, model),
  -- a parent has the child's asset and model
  ADD CONSTRAINT wallets_parent FOREIGN KEY (parent_id, asset_code, model)
    REFERENCES ledger.wallets (id, asset_code, model),
  ADD CONSTRAINT wallets_tree_models CHECK (parent_id IS NULL OR model IN ('enterprise', 'reseller')),
  ADD CONSTRAINT wallets_tree_depth CHECK (cardinality(path) BETWEEN 1 AND 8),
  ADD CONSTRAINT wallets_spend_mode_on_roots
    CHECK ((spend_mode IS NOT NULL) = (parent_id IS NULL AND model IN ('enterprise', 'reseller'))),
  -- a member spends what it was given: only a root can run on credit
  ADD CONSTRAINT wallets_members_no_credit CHECK (parent_id IS NULL OR credit_limit = 0),
  ADD CONSTRAINT wallets_system_no_lots CHECK (kind = 'customer' OR lot_balance = 0);
ALTER TABLE ledger.wallets DROP CONSTRAINT wallets_closed_is_empty;
ALTER TABLE ledger.wallets ADD CONSTRAINT wallets_closed_is_empty
  CHECK (status <> 'closed' OR (balance = 0 AND lot_balance = 0));
-- The limit now binds the non-expiring part of the balance (lot_balance >= 0, so the
-- balance itself stays above -credit_limit too).
ALTER TABLE ledger.wallets DROP CONSTRAINT wallets_balance_within_limit;
ALTER TABLE ledger.wallets ADD CONSTRAINT wallets_balance_within_limit
  CHECK (kind = 'system' OR balance - lot_balance >= -credit_limit);
CREATE INDEX wallets_children ON ledger.wallets (parent_id, id) WHERE parent_id IS NOT NULL;
-- A node's whole subtree is every member whose path holds it: one index lookup for a
-- roll-up at any depth (a recursive walk scanned the table once per level). Only tree
-- members are indexed, and a path never changes, so balance updates stay HOT.
CREATE INDEX wallets_subtree ON ledger.wallets USING gin (path) WHERE parent_id IS NOT NULL;
-- Every posting updates its wallets' rows: room on each page keeps those updates HOT
-- (no new index entries), which matters more now that trees add indexes and columns.
ALTER TABLE ledger.wallets SET (fillfactor = 80);

CREATE FUNCTION ledger.place_in_tree() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_parent record;
BEGIN
  IF NEW.parent_id IS NULL THEN
    NEW.root_id := NEW.id;
    NEW.path := ARRAY[NEW.id];
    IF NEW.model IN ('enterprise', 'reseller') THEN
      NEW.spend_mode := coalesce(NEW.spend_mode, 'allocated');
    END IF;
    RETURN NEW;
  END IF;
  SELECT kind, status, root_id, path INTO v_parent FROM ledger.wallets WHERE id = NEW.parent_id;
  IF FOUND AND v_parent.status <> 'active' THEN
    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'parent_not_active',
      DETAIL = jsonb_build_object('parent_id', NEW.parent_id, 'status', v_parent.status)::text;
  END IF;
  NEW.root_id := coalesce(v_parent.root_id, NEW.parent_id);  -- a missing parent fails the foreign key
  NEW.path := coalesce(v_parent.path, ARRAY[]::bigint[]) || NEW.id;
  RETURN NEW;
END $$;
CREATE TRIGGER wallets_place_in_tree BEFORE INSERT ON ledger.wallets
  FOR EACH ROW EXECUTE FUNCTION ledger.place_in_tree();

CREATE FUNCTION ledger.refuse_tree_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'wallet_identity_fixed',
    DETAIL = format('wallet %s: its place in a tree never changes', OLD.id);
END $$;
CREATE TRIGGER wallets_tree_fixed BEFORE UPDATE OF parent_id, root_id, path ON ledger.wallets
  FOR EACH ROW
  WHEN (OLD.parent_id IS DISTINCT FROM NEW.parent_id OR OLD.root_id IS DISTINCT FROM NEW.root_id
        OR OLD.path IS DISTINCT FROM NEW.path)
  EXECUTE FUNCTION ledger.refuse_tree_change();

-- Spend limits ------------------------------------------------------------------

CREATE TABLE ledger.spend_limits (
  wallet_id  bigint NOT NULL REFERENCES ledger.wallets (id),
  period     text NOT NULL CHECK (period IN ('day', 'week', 'month')),
  amount     bigint NOT NULL CHECK (amount > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (wallet_id, period)
);

CREATE TABLE ledger.spend_counters (
  wallet_id    bigint NOT NULL REFERENCES ledger.wallets (id),
  period       text NOT NULL,
  period_start timestamptz NOT NULL,
  spent        bigint NOT NULL CHECK (spent >= 0),
  PRIMARY KEY (wallet_id, period, period_start)
);

-- What each usage charged and each void gave back (negative): the audit trail that
-- makes every counter provable.
CREATE TABLE ledger.spend_charges (
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),
  wallet_id      bigint NOT NULL,
  period         text NOT NULL,
  period_start   timestamptz NOT NULL,
  amount         bigint NOT NULL CHECK (amount <> 0),
  PRIMARY KEY (transaction_id, wallet_id, period),
  FOREIGN KEY (wallet_id, period, period_start) REFERENCES ledger.spend_counters (wallet_id, period, period_start)
);
CREATE TRIGGER spend_charges_append_only BEFORE UPDATE OR DELETE ON ledger.spend_charges
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();

CREATE FUNCTION ledger.period_start(p_period text, p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
  SELECT date_trunc(p_period, p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- Charge a usage to every limit on the spender's path (root to self), in wallet and
-- period order; refuse the whole posting when one would be exceeded.
CREATE FUNCTION ledger.charge_spend(p_tx bigint, p_path bigint[], p_amount bigint, p_at timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_limit record;
  v_start timestamptz;
  v_spent bigint;
BEGIN
  FOR v_limit IN
    SELECT wallet_id, period, amount FROM spend_limits WHERE wallet_id = ANY (p_path) ORDER BY wallet_id, period
  LOOP
    v_start := period_start(v_limit.period, p_at);
    INSERT INTO spend_counters AS c (wallet_id, period, period_start, spent)
    SELECT v_limit.wallet_id, v_limit.period, v_start, p_amount WHERE p_amount <= v_limit.amount
    ON CONFLICT (wallet_id, period, period_start)
      DO UPDATE SET spent = c.spent + excluded.spent WHERE c.spent + excluded.spent <= v_limit.amount
    RETURNING spent INTO v_spent;
    IF v_spent IS NULL THEN
      SELECT spent INTO v_spent FROM spend_counters
       WHERE wallet_id = v_limit.wallet_id AND period = v_limit.period AND period_start = v_start;
      PERFORM refuse('spend_limit_exceeded', jsonb_build_object(
        'wallet_id', v_limit.wallet_id, 'period', v_limit.period, 'limit', v_limit.amount,
        'spent', coalesce(v_spent, 0), 'requested', p_amount, 'period_start', iso_utc(v_start)));
    END IF;
    INSERT INTO spend_charges (transaction_id, wallet_id, period, period_start, amount)
    VALUES (p_tx, v_limit.wallet_id, v_limit.period, v_start, p_amount);
    v_spent := NULL;
  END LOOP;
END $$;

-- A void of a usage gives back what the usage charged, to the counters it charged.
CREATE FUNCTION ledger.refund_spend(p_tx bigint, p_voided bigint) RETURNS void
LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_charge record;
BEGIN
  FOR v_charge IN
    SELECT wallet_id, period, period_start, amount FROM spend_charges
     WHERE transaction_id = p_voided ORDER BY wallet_id, period
  LOOP
    UPDATE spend_counters SET spent = spent - v_charge.amount
     WHERE wallet_id = v_charge.wallet_id AND period = v_charge.period AND period_start = v_charge.period_start;
    INSERT INTO spend_charges (transaction_id, wallet_id, period, period_start, amount)
    VALUES (p_tx, v_charge.wallet_id, v_charge.period, v_charge.period_start, -v_charge.amount);
  END LOOP;
END $$;

-- Lots ----------------------------------------------------------------------------

CREATE TABLE ledger.lots (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  wallet_id      bigint NOT NULL REFERENCES ledger.wallets (id),
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),  -- the credit that created it
  source_lot_id  bigint REFERENCES ledger.lots (id),                   -- the lot it was carried from
  amount         bigint NOT NULL CHECK (amount > 0),
  remaining      bigint NOT NULL,
  expires_at     timestamptz NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT lots_remaining_within_amount CHECK (remaining BETWEEN 0 AND amount)
);
CREATE INDEX lots_spendable ON ledger.lots (wallet_id, expires_at, id) WHERE remaining > 0;
CREATE INDEX lots_due ON ledger.lots (expires_at, id) WHERE remaining > 0;
CREATE INDEX lots_by_wallet ON ledger.lots (wallet_id, id);

CREATE TABLE ledger.lot_movements (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lot_id         bigint NOT NULL REFERENCES ledger.lots (id),
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),
  amount         bigint NOT NULL CHECK (amount <> 0),
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lot_movements_by_lot ON ledger.lot_movements (lot_id, id);
CREATE INDEX lot_movements_by_transaction ON ledger.lot_movements (transaction_id);
CREATE TRIGGER lot_movements_append_only BEFORE UPDATE OR DELETE ON ledger.lot_movements
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();

-- Each extension of a lot's expiry, once per idempotency key.
CREATE TABLE ledger.lot_extensions (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  lot_id          bigint NOT NULL REFERENCES ledger.lots (id),
  old_expires_at  timestamptz NOT NULL,
  new_expires_at  timestamptz NOT NULL,
  reason          text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT lot_extensions_later CHECK (new_expires_at > old_expires_at)
);
CREATE TRIGGER lot_extensions_append_only BEFORE UPDATE OR DELETE ON ledger.lot_extensions
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();

-- Every change of an existing lot's remaining credit, with its movement row (the
-- wallet's lot_balance is its caller's to keep).
CREATE FUNCTION ledger.move_lot(p_lot bigint, p_tx bigint, p_amount bigint)
RETURNS void LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
BEGIN
  UPDATE lots SET remaining = remaining + p_amount, updated_at = now() WHERE id = p_lot;
  INSERT INTO lot_movements (lot_id, transaction_id, amount) VALUES (p_lot, p_tx, p_amount);
END $$;

CREATE FUNCTION ledger.new_lot(p_wallet bigint, p_tx bigint, p_amount bigint, p_expires_at timestamptz,
                               p_source bigint DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_lot bigint;
BEGIN
  INSERT INTO lots (wallet_id, transaction_id, source_lot_id, amount, remaining, expires_at)
  VALUES (p_wallet, p_tx, p_source, p_amount, p_amount, p_expires_at)
  RETURNING id INTO v_lot;
  INSERT INTO lot_movements (lot_id, transaction_id, amount) VALUES (v_lot, p_tx, p_amount);
  UPDATE wallets SET lot_balance = lot_balance + p_amount WHERE id = p_wallet;
END $$;

-- A debit of `p_need` from a wallet that holds lots, under its row lock. Order:
--   1. the lots `p_first` names: the lot being expired, or the lots the voided
--      transaction created (a void takes back what its original brought first);
--   2. for a void, up to `p_general_first` of the non-expiring rest while it is
--      positive: what the original brought without expiry is taken back as credit
--      without expiry, so no one's expiring credit turns into credit that never expires;
--   3. unexpired lots, earliest expiry first (then lot id);
--   4. the non-expiring rest, down to -credit_limit (the CHECK on wallets).
-- Expired lots are never taken except as p_first. Returns the new balance.
CREATE FUNCTION ledger.debit_with_lots(p_wallet bigint, p_need bigint, p_tx bigint, p_at timestamptz,
                                       p_first bigint[], p_general_first bigint, p_allow_frozen boolean)
RETURNS bigint LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_wallet record;
  v_lot record;
  v_take bigint;
  v_taken bigint := 0;      -- from lots
  v_general bigint := 0;    -- reserved from the non-expiring rest in step 2
  v_balance bigint;
  v_expired bigint;
BEGIN
  SELECT balance, lot_balance, credit_limit, status INTO v_wallet FROM wallets WHERE id = p_wallet FOR NO KEY UPDATE;
  IF v_wallet.status <> 'active' AND NOT p_allow_frozen THEN
    -- re-checked under the lock: a freeze that committed meanwhile wins
    PERFORM refuse('wallet_' || v_wallet.status, jsonb_build_object('wallet_id', p_wallet));
  END IF;
  FOR v_lot IN
    SELECT id, remaining FROM lots
     WHERE wallet_id = p_wallet AND remaining > 0 AND id = ANY (coalesce(p_first, ARRAY[]::bigint[]))
     ORDER BY expires_at, id FOR UPDATE
  LOOP
    EXIT WHEN v_taken = p_need;
    v_take := least(v_lot.remaining, p_need - v_taken);
    PERFORM move_lot(v_lot.id, p_tx, -v_take);
    v_taken := v_taken + v_take;
  END LOOP;
  v_general := least(p_need - v_taken, greatest(v_wallet.balance - v_wallet.lot_balance, 0),
                     greatest(p_general_first, 0));
  FOR v_lot IN
    SELECT id, remaining FROM lots
     WHERE wallet_id = p_wallet AND remaining > 0 AND expires_at > p_at
       AND id <> ALL (coalesce(p_first, ARRAY[]::bigint[]))
     ORDER BY expires_at, id FOR UPDATE
  LOOP
    EXIT WHEN v_taken + v_general = p_need;
    v_take := least(v_lot.remaining, p_need - v_taken - v_general);
    PERFORM move_lot(v_lot.id, p_tx, -v_take);
    v_taken := v_taken + v_take;
  END LOOP;
  UPDATE wallets
     SET balance = balance - p_need, lot_balance = lot_balance - v_taken,
         entry_count = entry_count + 1, updated_at = now()
   WHERE id = p_wallet AND balance - p_need - (lot_balance - v_taken) >= -credit_limit
  RETURNING balance INTO v_balance;
  IF NOT FOUND THEN
    SELECT coalesce(sum(remaining), 0) INTO v_expired FROM lots
     WHERE wallet_id = p_wallet AND remaining > 0 AND expires_at <= p_at;
    PERFORM refuse('insufficient_funds', jsonb_build_object(
      'wallet_id', p_wallet, 'balance', v_wallet.balance, 'credit_limit', v_wallet.credit_limit,
      'expired', v_expired, 'available', v_wallet.balance - v_expired + v_wallet.credit_limit,
      'requested', p_need));
  END IF;
  RETURN v_balance;
END $$;

-- Posting -----------------------------------------------------------------------

DROP FUNCTION ledger.commit_posting(text, text, text, text, bigint, bigint, bigint, bigint[], bigint[],
  text, text, text, text, bigint, jsonb, timestamptz);

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
  v_now timestamptz := now();
  v_effective timestamptz := coalesce(p_effective_at, now());
  -- Lots are judged at the posting's time; a back-dated posting can't spend expired credit.
  v_at timestamptz := greatest(now(), coalesce(p_effective_at, now()));
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
  -- The expiry job's keys are its own: a client posting under one could block a lot's
  -- expiry for good.
  IF (p_action = 'expiry') <> (p_idempotency_key LIKE 'lot-expiry:%') THEN
    PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'idempotency keys starting lot-expiry: are reserved'));
  END IF;

  INSERT INTO transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id,
                            counterparty_wallet_id, external_ref, usage_id, product, description,
                            voids_transaction_id, metadata, effective_at)
  VALUES (p_idempotency_key, p_request_hash, p_action, p_asset, p_amount, p_wallet_id,
          p_counterparty_wallet_id, p_external_ref, p_usage_id, p_product, p_description,
          p_voids_transaction_id, coalesce(p_metadata, '{}'::jsonb), v_effective)
  ON CONFLICT ON CONSTRAINT transactions_idempotency_key_unique DO NOTHING
  RETURNING id INTO v_tx;

  IF v_tx IS NULL THEN
    -- The key already posted (for example a retry after a crash between this commit
    -- and the idempotency record): answer with the original transaction, post nothing.
    SELECT id, request_hash INTO v_existing FROM transactions WHERE idempotency_key = p_idempotency_key;
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
  IF p_action = 'void' THEN
    SELECT action INTO v_original_action FROM transactions WHERE id = p_voids_transaction_id;
    IF v_original_action IN ('void', 'expiry') THEN
      PERFORM refuse('not_voidable', jsonb_build_object('transaction_id', p_voids_transaction_id));
    END IF;
    -- the debit takes back first the lots the original created, then as much
    -- non-expiring credit as the original brought without a lot
    v_first := ARRAY(SELECT lot_id FROM lot_movements m WHERE m.transaction_id = p_voids_transaction_id
                        AND m.amount > 0);
    v_general_first := p_amount - coalesce((SELECT sum(m.amount) FROM lot_movements m
                                             WHERE m.transaction_id = p_voids_transaction_id AND m.amount > 0), 0);
  ELSIF p_action = 'expiry' THEN
    IF p_expiring_lot IS NULL THEN
      PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'an expiry names its lot'));
    END IF;
    v_first := ARRAY[p_expiring_lot];
  END IF;

  v_balances := array_fill(NULL::bigint, ARRAY[cardinality(v_legs)]);
  FOR v_leg IN
    SELECT ord FROM unnest(v_legs) WITH ORDINALITY AS l(wallet_id, ord) ORDER BY wallet_id, ord
  LOOP
    UPDATE wallets
       SET balance = balance + p_leg_amounts[v_leg],
           entry_count = entry_count + 1,
           updated_at = now()
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
    PERFORM 1 FROM lot_movements m WHERE m.transaction_id = v_tx AND m.lot_id = p_expiring_lot
                                     AND m.amount = -p_amount;
    IF NOT FOUND THEN
      PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'an expiry takes exactly what its lot holds'));
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
    IF p_action NOT IN ('topup', 'addon', 'bonus') THEN
      PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'only a top-up, add-on or bonus creates a lot'));
    END IF;
    IF p_lot_expires_at <= v_at THEN
      PERFORM refuse('expiry_in_past', jsonb_build_object('expires_at', iso_utc(p_lot_expires_at)));
    END IF;
    PERFORM new_lot(p_wallet_id, v_tx, p_amount, p_lot_expires_at);
  ELSIF v_debit_lots AND p_action IN ('transfer', 'allocate', 'reclaim', 'void') THEN
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
  effective_at := iso_utc(v_effective);
  balances := v_balances;
END $$;

-- Group commit: the same batch call, passing the new fields through. The wallets a
-- batch locks up front include the pool of every shared-pool member that uses, so
-- no posting takes a new wallet lock after the batch's.
DROP FUNCTION ledger.commit_postings(jsonb);
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
             metadata jsonb, lot_expires_at timestamptz)
  LOOP
    item := v_posting.item;
    BEGIN
      SELECT * INTO STRICT v_result
        FROM commit_posting(v_posting.key, v_posting.request_hash, v_posting.action, v_posting.asset,
                            v_posting.amount, v_posting.wallet_id, v_posting.counterparty_wallet_id,
                            v_posting.leg_wallets, v_posting.leg_amounts, v_posting.external_ref,
                            v_posting.usage_id, v_posting.product, v_posting.description,
                            v_posting.voids_transaction_id, coalesce(v_posting.metadata, '{}'::jsonb),
                            NULL, v_posting.lot_expires_at);
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

-- Expiry ------------------------------------------------------------------------

-- Turn what remains in expired lots into breakage, one ledger transaction (action
-- `expiry`) per lot, each in its own subtransaction so one failure stops only its lot.
-- The caller pages through the due lots in expiry order with (p_after_at, p_after_id)
-- and commits each page (keep pages small: each lot is a subtransaction, and past 64
-- in one transaction every session's snapshots slow down). Within a page, lots are
-- expired in wallet id order, the order every posting locks wallets in, and a wallet
-- another transaction holds is left for the next tick ('wallet_busy'), never waited
-- for, so a page never runs into the statement timeout behind busy wallets. A
-- lot's remaining amount is read under its wallet's lock, so an expiry and a usage of
-- the same wallet never both take the same money. The idempotency key names the lot
-- and how many movements it had, so a lot refilled later (a voided usage gives back
-- what it took) expires again under a new key.
CREATE FUNCTION ledger.expire_lots(p_limit integer, p_after_at timestamptz DEFAULT '-infinity',
                                   p_after_id bigint DEFAULT 0)
RETURNS TABLE (lot_id bigint, expires_at text, transaction_id bigint, wallet_id bigint, amount bigint,
               error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_due record;
  v_lot record;
  v_breakage bigint;
  v_result record;
BEGIN
  FOR v_due IN
    SELECT page.id, page.wallet_id, page.expires_at FROM (
      SELECT l.id, l.wallet_id, l.expires_at FROM lots l
       WHERE l.remaining > 0 AND l.expires_at <= now() AND (l.expires_at, l.id) > (p_after_at, p_after_id)
       ORDER BY l.expires_at, l.id LIMIT p_limit) page
     ORDER BY page.wallet_id, page.id
  LOOP
    lot_id := v_due.id;
    expires_at := iso_utc(v_due.expires_at);
    wallet_id := v_due.wallet_id;
    transaction_id := NULL;
    amount := NULL;
    error := NULL;
    BEGIN
      PERFORM 1 FROM wallets w WHERE w.id = v_due.wallet_id FOR NO KEY UPDATE SKIP LOCKED;
      IF NOT FOUND THEN
        error := 'wallet_busy';
        RETURN NEXT;
        CONTINUE;
      END IF;
      SELECT l.remaining, l.expires_at, w.asset_code,
             (SELECT count(*) FROM lot_movements m WHERE m.lot_id = l.id) AS moves
        INTO v_lot FROM lots l JOIN wallets w ON w.id = l.wallet_id WHERE l.id = v_due.id;
      IF v_lot.remaining > 0 AND v_lot.expires_at <= now() THEN
        SELECT w.id INTO v_breakage FROM wallets w
         WHERE w.kind = 'system' AND w.asset_code = v_lot.asset_code AND w.system_role = 'breakage';
        SELECT * INTO STRICT v_result
          FROM commit_posting(format('lot-expiry:%s:%s', v_due.id, v_lot.moves), 'lot-expiry', 'expiry',
                              v_lot.asset_code, v_lot.remaining, v_due.wallet_id, NULL,
                              ARRAY[v_due.wallet_id, v_breakage], ARRAY[-v_lot.remaining, v_lot.remaining],
                              p_description => 'expired credit', p_expiring_lot => v_due.id);
        transaction_id := v_result.transaction_id;
        amount := v_lot.remaining;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
    END;
    RETURN NEXT;
  END LOOP;
END $$;

-- Extension: a lot's expiry moves later, once per idempotency key. An expired lot is
-- not extended: what the expiry job does must not depend on when it ran.
CREATE FUNCTION ledger.extend_lot(p_key text, p_lot_id bigint, p_expires_at timestamptz, p_reason text DEFAULT NULL)
RETURNS TABLE (extension_id bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_existing record;
  v_lot record;
BEGIN
  -- one extension per key at a time, whichever lot the copies name: they answer alike
  PERFORM pg_advisory_xact_lock(hashtext('lot-extension:' || p_key));
  SELECT l.wallet_id INTO v_lot FROM lots l WHERE l.id = p_lot_id;
  IF NOT FOUND THEN
    PERFORM refuse('lot_not_found', jsonb_build_object('lot_id', p_lot_id));
  END IF;
  PERFORM 1 FROM wallets WHERE id = v_lot.wallet_id FOR NO KEY UPDATE;
  SELECT id, lot_id, new_expires_at INTO v_existing FROM lot_extensions WHERE idempotency_key = p_key;
  IF FOUND THEN
    IF v_existing.lot_id <> p_lot_id OR v_existing.new_expires_at <> p_expires_at THEN
      PERFORM refuse('idempotency_key_reused', jsonb_build_object('extension_id', v_existing.id));
    END IF;
    RETURN QUERY SELECT v_existing.id, true;
    RETURN;
  END IF;
  SELECT id, remaining, expires_at INTO v_lot FROM lots WHERE id = p_lot_id FOR UPDATE;
  IF v_lot.expires_at <= now() THEN
    PERFORM refuse('lot_expired', jsonb_build_object('lot_id', p_lot_id, 'expires_at', iso_utc(v_lot.expires_at)));
  ELSIF v_lot.remaining = 0 THEN
    PERFORM refuse('lot_spent', jsonb_build_object('lot_id', p_lot_id));
  ELSIF p_expires_at <= v_lot.expires_at THEN
    PERFORM refuse('expiry_not_later', jsonb_build_object(
      'lot_id', p_lot_id, 'expires_at', iso_utc(v_lot.expires_at), 'requested', iso_utc(p_expires_at)));
  END IF;
  UPDATE lots SET expires_at = p_expires_at, updated_at = now() WHERE id = p_lot_id;
  RETURN QUERY
    INSERT INTO lot_extensions (idempotency_key, lot_id, old_expires_at, new_expires_at, reason)
    VALUES (p_key, p_lot_id, v_lot.expires_at, p_expires_at, p_reason)
    RETURNING id, false;
END $$;

-- Privileges --------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ledger FROM PUBLIC;
GRANT SELECT ON ledger.spend_limits, ledger.spend_counters, ledger.spend_charges, ledger.lots,
  ledger.lot_movements, ledger.lot_extensions TO ledger_app;
GRANT INSERT, UPDATE, DELETE ON ledger.spend_limits TO ledger_app;
GRANT INSERT (asset_code, owner_id, model, credit_limit, metadata, parent_id, spend_mode) ON ledger.wallets TO ledger_app;
GRANT UPDATE (spend_mode) ON ledger.wallets TO ledger_app;
GRANT EXECUTE ON FUNCTION
  ledger.commit_posting(text, text, text, text, bigint, bigint, bigint, bigint[], bigint[],
    text, text, text, text, bigint, jsonb, timestamptz, timestamptz, bigint),
  ledger.commit_postings(jsonb),
  ledger.transaction_json(bigint),
  ledger.iso_utc(timestamptz),
  ledger.create_asset(text, smallint, text),
  ledger.mark_published(bigint[]),
  ledger.mark_failed(bigint, text),
  ledger.expire_lots(integer, timestamptz, bigint),
  ledger.extend_lot(text, bigint, timestamptz, text),
  ledger.period_start(text, timestamptz)
  TO ledger_app;
GRANT SELECT ON ledger.lots, ledger.lot_movements, ledger.spend_charges TO erp_exporter;

-- Events name the transaction's customer (the owner of the wallet that acted) and, in a
-- reseller's tree, the reseller, as the ERP lines do. Both are fixed once the wallet
-- exists (its owner and root never change), so rendering them on read stays stable.
CREATE OR REPLACE VIEW ledger.outbox_events AS
SELECT o.transaction_id, o.created_at, o.published_at, o.attempts, o.last_error,
       jsonb_build_object(
         'event_id', t.id::text,
         'transaction_id', t.id,
         'action', t.action,
         'asset', t.asset_code,
         'amount', t.amount,
         'wallet_id', t.wallet_id,
         'counterparty_wallet_id', t.counterparty_wallet_id,
         'customer_id', tw.owner_id,
         'reseller_id', CASE WHEN rw.model = 'reseller' THEN rw.owner_id END,
         'root_wallet_id', tw.root_id,
         'usage_id', t.usage_id,
         'product', t.product,
         'external_ref', t.external_ref,
         'description', t.description,
         'voids_transaction_id', t.voids_transaction_id,
         'idempotency_key', t.idempotency_key,
         'metadata', t.metadata,
         'effective_at', ledger.iso_utc(t.effective_at),
         'created_at', ledger.iso_utc(t.created_at),
         'legs', (SELECT jsonb_agg(jsonb_build_object(
                    'wallet_id', e.wallet_id, 'owner_id', w.owner_id, 'model', w.model,
                    'system_role', w.system_role, 'amount', e.amount) ORDER BY e.id)
                    FROM ledger.entries e JOIN ledger.wallets w ON w.id = e.wallet_id
                   WHERE e.transaction_id = t.id)
       ) AS event
  FROM ledger.outbox o JOIN ledger.transactions t ON t.id = o.transaction_id
  LEFT JOIN ledger.wallets tw ON tw.id = t.wallet_id LEFT JOIN ledger.wallets rw ON rw.id = tw.root_id;
