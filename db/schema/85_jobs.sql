-- Jobs: the database's side of the scheduled workers.

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
                              p_description => 'expired credit', p_expiring_lot => v_due.id,
                              p_actor => jsonb_build_object('principal', 'ledger:lot-expiry', 'role', 'job'));
        transaction_id := v_result.transaction_id;
        amount := v_lot.remaining;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
    END;
    RETURN NEXT;
  END LOOP;
END $$;
