-- ledger.commit_posting(): the one way money moves.
--
-- One round trip per posting: it claims the idempotency key, updates the cached
-- balances of the customer wallets in ascending id order (a deterministic lock order,
-- so opposite transfers cannot deadlock), and inserts all legs in one statement.
-- System accounts are validated but neither locked nor updated.
-- It returns only what the database knows (the id, timestamps, running balances); the
-- application renders the new transaction from the posting it sent, which is cheaper
-- than reading it back. A replay returns the stored original as transaction_json().
-- Refusals are raised as SQLSTATE P0001 with the error code as MESSAGE and a JSON
-- DETAIL, which the application maps to its error hierarchy.

CREATE FUNCTION ledger.iso_utc(ts timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- PL/pgSQL rather than SQL: a SQL function with a SET clause is never inlined and is
-- re-planned on every call; PL/pgSQL caches its plans per connection.
CREATE FUNCTION ledger.transaction_json(p_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = ledger, pg_temp AS $$
DECLARE
  v_result jsonb;
BEGIN
  SELECT jsonb_build_object(
    'id', t.id,
    'action', t.action,
    'asset', t.asset_code,
    'amount', t.amount,
    'wallet_id', t.wallet_id,
    'counterparty_wallet_id', t.counterparty_wallet_id,
    'idempotency_key', t.idempotency_key,
    'external_ref', t.external_ref,
    'usage_id', t.usage_id,
    'product', t.product,
    'description', t.description,
    'voids_transaction_id', t.voids_transaction_id,
    'metadata', t.metadata,
    'effective_at', iso_utc(t.effective_at),
    'created_at', iso_utc(t.created_at),
    'entries', (SELECT jsonb_agg(jsonb_build_object(
                  'wallet_id', e.wallet_id, 'amount', e.amount, 'balance_after', e.balance_after)
                  ORDER BY e.id)
                FROM entries e WHERE e.transaction_id = t.id))
    INTO v_result
    FROM transactions t WHERE t.id = p_id;
  RETURN v_result;
END $$;

CREATE FUNCTION ledger.refuse(p_code text, p_detail jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = p_code, DETAIL = p_detail::text;
END $$;

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
  OUT replayed boolean,
  OUT transaction_id bigint,
  OUT created_at text,
  OUT effective_at text,
  OUT balances bigint[],
  OUT original jsonb
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_tx bigint;
  v_existing record;
  v_wallet record;
  v_balances bigint[];
  v_balance bigint;
  v_leg int;
  v_now timestamptz := now();
  v_effective timestamptz := coalesce(p_effective_at, now());
BEGIN
  IF cardinality(p_leg_wallets) < 2 OR cardinality(p_leg_wallets) <> cardinality(p_leg_amounts) THEN
    PERFORM refuse('invalid_posting', jsonb_build_object('reason', 'legs'));
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

  v_balances := array_fill(NULL::bigint, ARRAY[cardinality(p_leg_wallets)]);
  FOR v_leg IN
    SELECT ord FROM unnest(p_leg_wallets) WITH ORDINALITY AS l(wallet_id, ord) ORDER BY wallet_id, ord
  LOOP
    UPDATE wallets
       SET balance = balance + p_leg_amounts[v_leg],
           entry_count = entry_count + 1,
           updated_at = now()
     WHERE id = p_leg_wallets[v_leg]
       AND kind = 'customer' AND status = 'active' AND asset_code = p_asset
       AND (p_leg_amounts[v_leg] > 0 OR balance + p_leg_amounts[v_leg] >= -credit_limit)
    RETURNING balance INTO v_balance;
    IF FOUND THEN
      v_balances[v_leg] := v_balance;
      CONTINUE;
    END IF;
    -- Not updated: find out why. A system account is the normal case.
    SELECT id, kind, status, asset_code, balance, credit_limit INTO v_wallet
      FROM wallets WHERE id = p_leg_wallets[v_leg];
    IF NOT FOUND THEN
      PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', p_leg_wallets[v_leg]));
    ELSIF v_wallet.asset_code <> p_asset THEN
      PERFORM refuse('asset_mismatch', jsonb_build_object(
        'wallet_id', v_wallet.id, 'wallet_asset', v_wallet.asset_code, 'asset', p_asset));
    ELSIF v_wallet.kind = 'system' THEN
      CONTINUE;
    ELSIF v_wallet.status <> 'active' THEN
      PERFORM refuse('wallet_' || v_wallet.status, jsonb_build_object('wallet_id', v_wallet.id));
    ELSE
      PERFORM refuse('insufficient_funds', jsonb_build_object(
        'wallet_id', v_wallet.id, 'balance', v_wallet.balance,
        'credit_limit', v_wallet.credit_limit, 'requested', -p_leg_amounts[v_leg]));
    END IF;
  END LOOP;

  INSERT INTO entries (transaction_id, wallet_id, asset_code, amount, balance_after)
  SELECT v_tx, l.wallet_id, p_asset, l.amount, l.balance_after
    FROM unnest(p_leg_wallets, p_leg_amounts, v_balances) AS l(wallet_id, amount, balance_after);

  replayed := false;
  transaction_id := v_tx;
  created_at := iso_utc(v_now);
  effective_at := iso_utc(v_effective);
  balances := v_balances;
END $$;

-- Privileges: the functions' database role reads everything, creates customer
-- wallets, changes a wallet's status and credit limit, and moves money only
-- through ledger.commit_posting().
REVOKE ALL ON ALL TABLES IN SCHEMA ledger FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ledger FROM PUBLIC;
GRANT USAGE ON SCHEMA ledger TO ledger_app;
GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO ledger_app;
GRANT INSERT (asset_code, owner_id, model, credit_limit, metadata) ON ledger.wallets TO ledger_app;
GRANT UPDATE (status, credit_limit, metadata, updated_at) ON ledger.wallets TO ledger_app;
GRANT EXECUTE ON FUNCTION ledger.commit_posting(text, text, text, text, bigint, bigint, bigint, bigint[], bigint[],
  text, text, text, text, bigint, jsonb, timestamptz) TO ledger_app;
GRANT EXECUTE ON FUNCTION ledger.transaction_json(bigint) TO ledger_app;
GRANT EXECUTE ON FUNCTION ledger.iso_utc(timestamptz) TO ledger_app;

-- An asset comes with its system accounts; creating both in one call keeps every
-- asset postable from the moment it exists.
CREATE FUNCTION ledger.create_asset(p_code text, p_scale smallint, p_description text DEFAULT '')
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
BEGIN
  INSERT INTO assets (code, scale, description) VALUES (p_code, p_scale, coalesce(p_description, ''));
  INSERT INTO wallets (asset_code, kind, system_role, owner_id, model)
  SELECT p_code, 'system', role, 'system', 'system'
    FROM unnest(ARRAY['funding', 'revenue', 'promotion']) AS role;
END $$;
GRANT EXECUTE ON FUNCTION ledger.create_asset(text, smallint, text) TO ledger_app;
