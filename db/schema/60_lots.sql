-- Lots: credit with an expiry.
--
-- A top-up, add-on or bonus that carries an expiry creates a lot. A wallet's
-- `lot_balance` is the sum of its lots' remaining amounts; the rest of its balance
-- never expires. A debit takes from unexpired lots, earliest expiry first, and then
-- from the non-expiring rest, which may not go below -credit_limit (a CHECK):
-- expired lots can't be spent even before the expiry job turns them into breakage.
-- Money keeps its expiry when it moves: a transfer, allocation or reclaim carries the
-- lot pieces it took into new lots of the receiver with the same expiry. A void takes
-- the lots its original created first and gives back the pieces its original took.
-- Every change of a lot's remaining amount is a row of lot_movements (append-only), and
-- a wallet's lots change only under its wallet row lock.

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

-- Extension: a lot's expiry moves later, once per idempotency key. An expired lot is
-- not extended: what the expiry job does must not depend on when it ran.
CREATE FUNCTION ledger.extend_lot(p_key text, p_lot_id bigint, p_expires_at timestamptz, p_reason text DEFAULT NULL,
                                  p_tenant text DEFAULT '', p_actor jsonb DEFAULT NULL)
RETURNS TABLE (extension_id bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_existing record;
  v_lot record;
BEGIN
  -- one extension per key at a time, whichever lot the copies name: they answer alike
  PERFORM pg_advisory_xact_lock(hashtext('lot-extension:' || coalesce(p_tenant, '') || ':' || p_key));
  SELECT l.wallet_id INTO v_lot FROM lots l WHERE l.id = p_lot_id;
  IF NOT FOUND THEN
    PERFORM refuse('lot_not_found', jsonb_build_object('lot_id', p_lot_id));
  END IF;
  PERFORM 1 FROM wallets WHERE id = v_lot.wallet_id FOR NO KEY UPDATE;
  SELECT id, lot_id, new_expires_at INTO v_existing FROM lot_extensions
   WHERE tenant = coalesce(p_tenant, '') AND idempotency_key = p_key;
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
    INSERT INTO lot_extensions (idempotency_key, lot_id, old_expires_at, new_expires_at, reason, tenant, actor)
    VALUES (p_key, p_lot_id, v_lot.expires_at, p_expires_at, p_reason, coalesce(p_tenant, ''), p_actor)
    RETURNING id, false;
END $$;
