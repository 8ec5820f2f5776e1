-- Posting rules: the legs each action must write, as the database holds them.
--
-- The application builds a posting's legs (common/ledger/postings.py) and renders its
-- answer from them, so ledger.commit_posting() takes them from the caller; this is
-- what keeps a caller from labelling any balanced movement with any action (a
-- `usage` that pays a customer out of revenue). One definition serves the posting,
-- which refuses a breach before it writes anything, and the reconciliation, which
-- runs it over every stored transaction (common/adapters/reconciliation.py).
--
--   action    legs (a = amount; system accounts are the asset's, by role)
--   topup     funding -a, wallet +a; at a wholesale price (metadata.price, 1..a):
--             funding -price, discount -(a - price), wallet +a
--   addon     funding -a, wallet +a
--   bonus     promotion -a, wallet +a
--   usage     wallet -a, revenue +a (a shared pool's member: commit_posting() has the
--             pool pay after this check; a stored one may show the tree's root as payer)
--   transfer  wallet -a, counterparty +a (two different wallets)
--   allocate  counterparty (the parent) -a, wallet +a
--   reclaim   wallet -a, counterparty (the parent) +a
--   void      exactly the original's entries negated, with the original's asset,
--             amount, wallet and counterparty
--   opening_balance  migration -a, wallet +a (a balance brought in from a legacy
--             ledger: docs/migrations.md)
--   expiry    wallet -a, breakage +a (commit_posting() checks that the named lot is the
--             wallet's, is due, and gave all it held: a; the reconciliation's
--             expiry_only_of_due_lots checks the stored lot was due when it expired)
--   migration_transfer  wallet -a, counterparty +a, as a transfer (a move of a
--             migration plan: any two customer wallets of the asset, docs/migrations.md)
--   dormant_sweep  wallet -a, dormant +a (86_dormancy.sql: the runner sweeps the whole
--             spendable balance; its void, a reactivation, gives back exactly that)
--   dormant_breakage  wallet -a, breakage +a (the same, under a breakage policy: the
--             balance recognized as revenue; a reactivation voids it too)
-- Only transfer, allocate, reclaim, migration_transfer (and a void of one) name a counterparty.
--
-- Legs are compared as a multiset of (wallet, amount): their order is the caller's.
-- The cost on the posting path is one or two index lookups (the system accounts by
-- their unique (asset, role); a void's original and its entries by key) and a few
-- comparisons, inside the posting's own call: no extra round trip.

-- NULL when the legs are exactly what the action's rule gives, else why not (a short
-- reason, the `rule` of commit_posting()'s refusal and the reconciliation's report).
-- `p_pool_may_pay`: a stored usage of a tree's member may have been paid by its root
-- (a shared pool); a new posting never names the root itself, the database swaps it in.
CREATE FUNCTION ledger.posting_rule_breach(
  p_action text,
  p_asset text,
  p_amount bigint,
  p_wallet_id bigint,
  p_counterparty_wallet_id bigint,
  p_metadata jsonb,
  p_voids_transaction_id bigint,
  p_leg_wallets bigint[],
  p_leg_amounts bigint[],
  p_pool_may_pay boolean DEFAULT false
)
-- No SET search_path: the reconciliation calls it once per stored transaction, and a
-- SET clause costs every call; every name below is qualified instead.
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_wallets bigint[];
  v_amounts bigint[];
  v_system bigint;
  v_discount bigint;
  v_price numeric;
  v_payer bigint := p_wallet_id;
  v_original record;
  v_count int;
  v_matched boolean[];
  v_found boolean;
  v_rule int;
  v_leg int;
BEGIN
  IF p_amount IS NULL OR p_amount <= 0 THEN
    RETURN 'the amount is positive';
  END IF;
  IF p_wallet_id IS NULL THEN
    RETURN 'a posting names its wallet';
  END IF;
  IF cardinality(p_leg_wallets) IS DISTINCT FROM cardinality(p_leg_amounts) THEN
    RETURN 'one amount per leg';
  END IF;
  IF p_action IN ('transfer', 'allocate', 'reclaim', 'migration_transfer') THEN
    IF p_counterparty_wallet_id IS NULL OR p_counterparty_wallet_id = p_wallet_id THEN
      RETURN p_action || ' moves between the wallet and another wallet, its counterparty';
    END IF;
  ELSIF p_action IN ('topup', 'addon', 'bonus', 'usage', 'expiry', 'opening_balance', 'dormant_sweep',
                     'dormant_breakage')
        AND p_counterparty_wallet_id IS NOT NULL THEN
    RETURN p_action || ' names no counterparty';
  END IF;
  IF (p_action = 'void') <> (p_voids_transaction_id IS NOT NULL) THEN
    RETURN 'a void, and only a void, names the transaction it voids';
  END IF;

  CASE p_action
  WHEN 'topup', 'addon', 'bonus', 'usage', 'expiry', 'opening_balance', 'dormant_sweep', 'dormant_breakage' THEN
    SELECT w.id INTO v_system FROM ledger.wallets w
     WHERE w.kind = 'system' AND w.asset_code = p_asset
       AND w.system_role = CASE p_action WHEN 'topup' THEN 'funding' WHEN 'addon' THEN 'funding'
                                         WHEN 'bonus' THEN 'promotion' WHEN 'usage' THEN 'revenue'
                                         WHEN 'opening_balance' THEN 'migration'
                                         WHEN 'dormant_sweep' THEN 'dormant' ELSE 'breakage' END;
    IF v_system IS NULL THEN
      RETURN 'the asset has no system account for ' || p_action;
    END IF;
    IF p_action IN ('usage', 'expiry', 'dormant_sweep', 'dormant_breakage') THEN
      IF p_action = 'usage' AND p_pool_may_pay AND NOT v_payer = ANY (p_leg_wallets) THEN
        SELECT w.root_id INTO v_payer FROM ledger.wallets w WHERE w.id = p_wallet_id AND w.parent_id IS NOT NULL;
      END IF;
      v_wallets := ARRAY[v_payer, v_system];
      v_amounts := ARRAY[-p_amount, p_amount];
    ELSIF p_action = 'topup' AND coalesce(p_metadata, '{}'::jsonb) ? 'price' THEN
      IF jsonb_typeof(p_metadata -> 'price') <> 'number' THEN
        RETURN 'a top-up''s price is a whole number from 1 to its amount';
      END IF;
      v_price := (p_metadata ->> 'price')::numeric;
      IF v_price <> trunc(v_price) OR v_price < 1 OR v_price > p_amount THEN
        RETURN 'a top-up''s price is a whole number from 1 to its amount';
      END IF;
      IF v_price = p_amount THEN
        v_wallets := ARRAY[v_system, p_wallet_id];
        v_amounts := ARRAY[-p_amount, p_amount];
      ELSE
        SELECT w.id INTO v_discount FROM ledger.wallets w
         WHERE w.kind = 'system' AND w.asset_code = p_asset AND w.system_role = 'discount';
        IF v_discount IS NULL THEN
          RETURN 'the asset has no system account for a discount';
        END IF;
        v_wallets := ARRAY[v_system, v_discount, p_wallet_id];
        v_amounts := ARRAY[-v_price::bigint, v_price::bigint - p_amount, p_amount];
      END IF;
    ELSE
      v_wallets := ARRAY[v_system, p_wallet_id];
      v_amounts := ARRAY[-p_amount, p_amount];
    END IF;
  WHEN 'transfer', 'reclaim', 'migration_transfer' THEN
    v_wallets := ARRAY[p_wallet_id, p_counterparty_wallet_id];
    v_amounts := ARRAY[-p_amount, p_amount];
  WHEN 'allocate' THEN
    v_wallets := ARRAY[p_counterparty_wallet_id, p_wallet_id];
    v_amounts := ARRAY[-p_amount, p_amount];
  WHEN 'void' THEN
    SELECT t.asset_code, t.amount, t.wallet_id, t.counterparty_wallet_id INTO v_original
      FROM ledger.transactions t WHERE t.id = p_voids_transaction_id;
    IF NOT FOUND THEN
      RETURN 'the voided transaction does not exist';
    END IF;
    IF (v_original.asset_code, v_original.amount, v_original.wallet_id, v_original.counterparty_wallet_id)
       IS DISTINCT FROM (p_asset, p_amount, p_wallet_id, p_counterparty_wallet_id) THEN
      RETURN 'a void has its original''s asset, amount, wallet and counterparty';
    END IF;
    SELECT array_agg(e.wallet_id), array_agg(-e.amount) INTO v_wallets, v_amounts
      FROM ledger.entries e WHERE e.transaction_id = p_voids_transaction_id;
  ELSE
    RETURN 'no posting rule for the action ' || coalesce(p_action, 'null');
  END CASE;

  -- Equal multisets: as many legs, and each of the rule's matched by a caller's leg not
  -- matched before. A rule writes two or three legs (a void as many as its original,
  -- which followed a rule too), so this is a few comparisons and no query. The rule's
  -- side holds no NULL (checked above; entries have none), and a caller's NULL leg
  -- matches nothing.
  v_count := cardinality(v_wallets);
  IF coalesce(v_count, 0) = 0 OR v_count IS DISTINCT FROM cardinality(p_leg_wallets) THEN
    RETURN 'the legs are not what ' || p_action || ' moves';
  ELSIF v_count > 3 THEN
    RETURN 'more legs than any rule writes';
  END IF;
  v_matched := array_fill(false, ARRAY[v_count]);
  FOR v_rule IN 1 .. v_count LOOP
    v_found := false;
    FOR v_leg IN 1 .. v_count LOOP
      IF NOT v_matched[v_leg] AND p_leg_wallets[v_leg] = v_wallets[v_rule]
         AND p_leg_amounts[v_leg] = v_amounts[v_rule] THEN
        v_matched[v_leg] := true;
        v_found := true;
        EXIT;
      END IF;
    END LOOP;
    IF NOT v_found THEN
      RETURN 'the legs are not what ' || p_action || ' moves';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
