-- Read views: how stored transactions and events are rendered.
--
-- A replay answers with the stored original as transaction_json() renders it;
-- common/adapters/ledger_store.py renders a new posting the same way from what it sent
-- (same keys, same values), so a first answer and its replay are byte-for-byte equal.
-- Events are rendered on read from the append-only rows the outbox points at.

-- STABLE, as to_char() is: Postgres inlines a SQL function only when its body is no
-- more volatile than it is declared, and called through the SQL-function executor
-- instead this cost about 15 µs per call (bench.db_time), twice per posting.
CREATE FUNCTION ledger.iso_utc(ts timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
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
    'actor', t.actor,
    'entries', (SELECT jsonb_agg(jsonb_build_object(
                  'wallet_id', e.wallet_id, 'amount', e.amount, 'balance_after', e.balance_after)
                  ORDER BY e.id)
                FROM entries e WHERE e.transaction_id = t.id))
    INTO v_result
    FROM transactions t WHERE t.id = p_id;
  RETURN v_result;
END $$;

-- Events name the transaction's customer (the owner of the wallet that acted) and, in a
-- reseller's tree, the reseller, as the ERP lines do. Both are fixed once the wallet
-- exists (its owner and root never change), so rendering them on read stays stable.
CREATE VIEW ledger.outbox_events AS
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
         'actor', t.actor,
         'legs', (SELECT jsonb_agg(jsonb_build_object(
                    'wallet_id', e.wallet_id, 'owner_id', w.owner_id, 'model', w.model,
                    'system_role', w.system_role, 'amount', e.amount) ORDER BY e.id)
                    FROM ledger.entries e JOIN ledger.wallets w ON w.id = e.wallet_id
                   WHERE e.transaction_id = t.id)
       ) AS event
  FROM ledger.outbox o JOIN ledger.transactions t ON t.id = o.transaction_id
  LEFT JOIN ledger.wallets tw ON tw.id = t.wallet_id LEFT JOIN ledger.wallets rw ON rw.id = tw.root_id;
